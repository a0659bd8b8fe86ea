"""SFT training throughput: packed (padding-free BFD) versus plain padded batches, same data.

    python benchmarks/sft_packing.py                      # artifacts/models/base, default settings
    python benchmarks/sft_packing.py --model artifacts/models/base --steps 6 --batch-size 4 --max-length 384

Rows are conversations in the Janus shape (system, user, assistant) built from the bundled
instruction pool, so their lengths vary as real ones do. Each mode trains `--steps` steps with
the same batch size, LoRA and fp32 as the default profile; throughput counts the real
(non-padding) tokens TRL reports (`num_tokens`) over the training time. With packing, TRL's
best-fit-decreasing packer fills each `max_length` row with whole conversations, and
transformers keeps them apart with a block-diagonal mask built from the position ids.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SYSTEMS = [
    "You are a patient tutor who explains each idea with one concrete example.",
    "You are a terse senior engineer: short sentences, no filler, numbers where they help.",
    "You write for curious children: simple words, a friendly tone, and one fun fact.",
]


def pool_rows(count: int) -> list[dict]:
    """Conversations from the bundled instruction pool: varied lengths, Janus-style system turns."""
    import janus_align

    pool = Path("data/instructions/pool.jsonl")
    if not pool.is_file():
        pool = Path(janus_align.__file__).parent / "default_data" / "instructions" / "pool.jsonl"
    instructions = [json.loads(line)["instruction"] for line in pool.read_text().splitlines() if line.strip()]
    rows = []
    for i in range(count):
        prompt = instructions[i % len(instructions)]
        answer = " ".join(instructions[(i * 7 + j) % len(instructions)] for j in range(1 + i % 4))  # 1-4 paragraphs
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEMS[i % len(SYSTEMS)]},
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    return rows


def measure(model_dir: str, rows: list[dict], packing: bool, args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from janus_align.models.checkpoint import load_tokenizer
    from janus_align.train.chat_template import training_chat_template

    tokenizer = load_tokenizer(model_dir, padding_side="right")
    tokenizer.chat_template = training_chat_template(tokenizer) or tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=1e-4,
            max_length=args.max_length,
            packing=packing,
            assistant_only_loss=True,
            use_cpu=True,
            bf16=args.bf16,
            gradient_checkpointing=False,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=0,
            disable_tqdm=True,
        )
        lora = (
            LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM") if args.lora else None
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
        )
        sequences = len(trainer.train_dataset)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    tokens = max(entry.get("num_tokens", 0) for entry in trainer.state.log_history)
    return {
        "mode": "packed" if packing else "padded",
        "steps": args.steps,
        "train_s": round(seconds, 1),
        "tokens": int(tokens),
        "tokens_per_s": round(tokens / seconds, 1),
        "sequences": sequences,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="artifacts/models/base", help="checkpoint directory (run `janus prepare_model`)"
    )
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--no-lora", dest="lora", action="store_false")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (slower than fp32 on AVX2-only CPUs)")
    args = parser.parse_args()
    if not Path(args.model, "config.json").is_file():
        raise SystemExit(f"{args.model}: no checkpoint (run `janus prepare_model` first)")
    rows = pool_rows(args.rows)
    padded = measure(args.model, rows, False, args)
    packed = measure(args.model, rows, True, args)
    for result in (padded, packed):
        print(json.dumps(result))
    print(
        f"packed/padded tokens per second: {packed['tokens_per_s'] / padded['tokens_per_s']:.2f}x "
        f"({packed['tokens_per_s']} vs {padded['tokens_per_s']} tok/s, batch {args.batch_size}, "
        f"max_length {args.max_length}, {'LoRA' if args.lora else 'full'}, {'bf16 autocast' if args.bf16 else 'fp32'}, "
        f"{os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
