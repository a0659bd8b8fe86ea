"""The GPU check: a randomly initialised Mistral-7B trained and decoded on one GPU, figures to one file.

Run it through benchmarks/gpu_check.sh (which installs the wheels the GPU image lacks); `--tiny`
runs the same code on a tiny Mistral on the CPU, as a check that it runs at all.

Sections, each timed on its own and recorded even when another fails (an out-of-memory error
is a figure too):
1. generation throughput at batch sizes 1, 8, 32 (prompts of 64..256 tokens, 128 new tokens,
   greedy): the project's GPU path (llm/hf_generate.py `generate_rows`) against a plain batched
   `model.generate` call, both left-padded;
2. one LoRA SFT step (r 16, all linear layers) with TRL's SFTTrainer, packing to 8,192 tokens,
   gradient checkpointing, bf16;
3. one full SFT step, the same way. Full fine-tuning of 7B in 78 GiB: bf16 weights (14.5 GB),
   bf16 gradients (14.5 GB) and AdamW's two moments in bf16 (29 GB), about 58 GB before
   activations; no fp32 master weights (with them, 7B needs about 112 GB: ZeRO-3 over several
   GPUs, the paper profile's setting). The first step allocates the optimizer state, so the
   second step is the one timed.

No weights are needed: the model is MistralForCausalLM at Mistral-7B's shape with random
weights, built on the GPU (sliding window off, as Mistral-7B v0.2/v0.3).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

SEVEN_B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=32768,
    rope_theta=1e6,
    sliding_window=None,
)
TINY = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rope_theta=1e6,
    sliding_window=None,
)
PAD, BOS, EOS = 0, 1, 2


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build_model(tiny: bool, device: str, dtype: torch.dtype) -> Any:
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(**(TINY if tiny else SEVEN_B), pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
    torch.manual_seed(0)
    with torch.device(device):
        # Built on the GPU in bf16 directly: a float32 7B would take 28 GB first.
        model = MistralForCausalLM._from_config(config, dtype=dtype)
    return model


def tokenizer() -> Any:
    """A word-level tokenizer with pad/bos/eos only: the data is token ids already."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, "<unk>": 3}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def random_prompts(count: int, vocab: int, low: int, high: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high + 1, (count,), generator=generator).tolist()
    return [torch.randint(4, vocab, (n,), generator=generator).tolist() for n in lengths]


def peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def reset_peak(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def generation(model: Any, device: str, batch_sizes: list[int], new_tokens: int, prompt_range: tuple[int, int]) -> list:
    """Tokens/s of the project's GPU path and of plain batched `model.generate`, per batch size."""
    from janus_align.config.schema import Sampling
    from janus_align.llm.hf_generate import generate_rows

    greedy = Sampling(max_new_tokens=new_tokens, temperature=0.0, top_p=1.0)
    vocab = model.config.vocab_size
    figures = []

    def plain(prompts: list[list[int]]) -> int:
        width = max(map(len, prompts))
        ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts], device=model.device)
        mask = (
            torch.arange(width, device=model.device)[None, :]
            >= torch.tensor([width - len(p) for p in prompts], device=model.device)[:, None]
        ).long()
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                pad_token_id=PAD, eos_token_id=[EOS], top_k=None, top_p=None, temperature=None,
            )  # fmt: skip
        return sum(len([t for t in row if t != PAD]) for row in out[:, width:].tolist())

    def ours(prompts: list[list[int]]) -> int:
        rows = generate_rows(model, prompts, PAD, greedy, [EOS], [0] * len(prompts), [None] * len(prompts))
        return sum(len(r.tokens) + r.finished for r in rows)

    runs: dict[str, Callable[[list[list[int]]], int]] = {"project_generate_rows": ours, "model_generate": plain}
    ours(random_prompts(2, vocab, 8, 16, seed=99))  # warm-up: kernels, allocator
    for batch in batch_sizes:
        prompts = random_prompts(batch, vocab, *prompt_range, seed=batch)
        for name, run in runs.items():
            reset_peak(device)
            synchronize(device)
            started = time.perf_counter()
            tokens = run(prompts)
            synchronize(device)
            seconds = time.perf_counter() - started
            figures.append(
                {
                    "path": name,
                    "batch_size": batch,
                    "new_tokens_per_row": new_tokens,
                    "generated_tokens": tokens,
                    "seconds": round(seconds, 3),
                    "tokens_per_s": round(tokens / seconds, 1),
                    "peak_gib": peak_gib(device),
                }
            )
            print(f"generate {name} batch {batch}: {tokens / seconds:.1f} tok/s", flush=True)
    return figures


class StepTimer:
    """A TrainerCallback recording each optimizer step's wall time (GPU work included)."""

    def __init__(self, device: str):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                synchronize(device)
                timer.started = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                synchronize(device)
                timer.steps.append(time.perf_counter() - timer.started)

        self.callback = Callback()
        self.started = 0.0
        self.steps: list[float] = []


def sft_step(model: Any, device: str, seq_len: int, lora: bool, steps: int = 2) -> dict[str, Any]:
    """`steps` TRL SFT steps, one packed row of `seq_len` tokens each; the last step is timed."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    vocab = model.config.vocab_size
    # Documents of 256..2048 tokens (tiny: 16..128), enough to pack `steps` full rows.
    low, high = (256, 2048) if seq_len >= 4096 else (16, 128)
    documents, total, seed = [], 0, 0
    while total < seq_len * (steps + 1):
        [doc] = random_prompts(1, vocab, low, high, seed=1000 + seed)
        documents.append(doc + [EOS])
        total += len(doc) + 1
        seed += 1
    data = Dataset.from_dict({"input_ids": documents})
    timer = StepTimer(device)
    with tempfile.TemporaryDirectory(prefix="janus-gpu-check-") as tmp:
        config = SFTConfig(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=1,
            max_length=seq_len,
            packing=True,
            gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            bf16=device == "cuda",
            use_cpu=device != "cuda",
            optim="adamw_torch_fused" if device == "cuda" else "adamw_torch",
            learning_rate=1e-5,
            lr_scheduler_type="constant",
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            dataloader_num_workers=0,
            seed=0,
        )
        peft = None
        if lora:
            from peft import LoraConfig

            peft = LoraConfig(
                r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
            )
        else:
            model.requires_grad_(True)  # the LoRA section froze the base weights
        reset_peak(device)
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=data,
            processing_class=tokenizer(),
            peft_config=peft,
            callbacks=[timer.callback],
        )
        trainer.train()
        trained = trainer.model
        del trainer
    timed = timer.steps[-1]
    figures = {
        "kind": "lora r16 all-linear"
        if lora
        else f"full ({str(model.dtype).removeprefix('torch.')} weights, grads, AdamW moments)",
        "tokens_per_step": seq_len,
        "per_device_batch_size": 1,
        "packing": True,
        "gradient_checkpointing": True,
        "step_seconds": [round(s, 3) for s in timer.steps],
        "tokens_per_s": round(seq_len / timed, 1),
        "peak_gib": peak_gib(device),
    }
    print(f"sft {'lora' if lora else 'full'}: {seq_len / timed:.1f} tok/s, peak {figures['peak_gib']} GiB", flush=True)
    if lora:
        trained.unload()  # the base model again, without the adapter, for the next section
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny Mistral (the CPU check that it runs)")
    default_out = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else Path("gpu_check.json")
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not args.tiny and device != "cuda":
        parser.error("the 7B check needs a GPU; use --tiny on a CPU")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    seq_len = 256 if args.tiny else 8192
    started = time.perf_counter()
    report: dict[str, Any] = {
        "model": "MistralForCausalLM, random weights, " + ("tiny" if args.tiny else "Mistral-7B shape"),
        "config": TINY if args.tiny else SEVEN_B,
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "versions": {},
    }
    for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets"):
        try:
            report["versions"][name] = __import__(name).__version__
        except ImportError:
            report["versions"][name] = None

    def save() -> None:
        report["wall_s"] = round(time.perf_counter() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def section(name: str, run: Callable[[], Any]) -> None:
        try:
            report[name] = run()
        except Exception as exc:  # an OOM is a result: record it, go on with the next section
            report[name] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}", "trace": traceback.format_exc()[-2000:]}
            print(f"{name} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
        save()

    model = build_model(args.tiny, device, dtype)
    report["parameters_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
    save()
    batches = [1, 4] if args.tiny else [1, 8, 32]
    new_tokens = 16 if args.tiny else 128
    prompt_range = (8, 32) if args.tiny else (64, 256)
    section("generation", lambda: generation(model, device, batches, new_tokens, prompt_range))
    section("sft_lora", lambda: sft_step(model, device, seq_len, lora=True))
    section("sft_full", lambda: sft_step(model, device, seq_len, lora=False))
    print(f"figures: {args.out} ({report['wall_s']} s)", flush=True)


if __name__ == "__main__":
    main()
