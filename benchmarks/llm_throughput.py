"""Throughput of the LLM engine, both backends, in one run.

1. transformers backend (SmolLM2-135M checkpoint, greedy, same prompts, same max_new_tokens):
   generated tokens/s of the engine at batch sizes 1, 8, 16 and 32 against plain `model.generate`
   one prompt at a time, and against `model.generate` on batches of 16 (which keeps finished
   rows in the batch; the engine's decoding loop drops them). Tokens are counted honestly: up to and including each answer's EOS,
   never the padding a batch keeps generating after a row has finished.
   Target: batched >= 5x plain batch-1 generate.
2. openai backend against the loopback server (tests/loopback_server.py) answering after 200 ms:
   requests/s at concurrency 1, 8 and 32 against the ideal concurrency / 0.2 s.
   Target: concurrency 32 >= 90% of 160 req/s.

    python benchmarks/llm_throughput.py                  # artifacts/models/base, else builds one
    python benchmarks/llm_throughput.py --model-dir DIR  # any SmolLM2-like checkpoint
    python benchmarks/llm_throughput.py --skip-transformers

Takes about 3 minutes on 2 cores (mostly the two batch-1 runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the loopback server: one module for tests and benchmark
# Before torch loads: OpenMP threads that spin while waiting slow torch down ~10x on a machine
# whose 2 cores are shared with other jobs (measured: 0.7 vs 6.3 tok/s at batch 1).
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TQDM_DISABLE": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}.items():
    os.environ.setdefault(_name, _value)

from janus_align.config import OpenAISettings, Sampling, TransformersSettings  # noqa: E402
from janus_align.llm import ChatRequest, open_engine  # noqa: E402
from janus_align.llm.cache import RequestCache  # noqa: E402
from janus_align.llm.engine import LLMEngine  # noqa: E402
from loopback_server import serve_in_subprocess  # noqa: E402

EMBEDDED = "embedded:smollm2-135m-instruct"
LATENCY_S = 0.2
TOPICS = [
    "the water cycle",
    "how vaccines work",
    "the history of the printing press",
    "black holes",
    "photosynthesis",
    "the French Revolution",
    "how a CPU executes instructions",
    "plate tectonics",
    "the causes of inflation",
    "how bees communicate",
    "the invention of the telephone",
    "machine learning",
    "the Roman aqueducts",
    "ocean tides",
    "the human immune system",
    "renewable energy",
]


def smollm2_checkpoint(model_dir: str | None, scratch: Path) -> tuple[Path, str]:
    """The checkpoint to measure: --model-dir, the pipeline's SmolLM2 base, or a fresh conversion."""
    if model_dir:
        return Path(model_dir), "given with --model-dir"
    base = REPO / "artifacts" / "models" / "base"
    source = base / "janus_source.json"
    if source.is_file() and json.loads(source.read_text()).get("base") == EMBEDDED:
        return base, "artifacts/models/base"
    from janus_align.models.prepare_model import load_embedded, save_checkpoint

    out = scratch / "smollm2"
    model, tokenizer = load_embedded(EMBEDDED.removeprefix("embedded:"))
    save_checkpoint(model, tokenizer, out, "bfloat16", EMBEDDED)
    return out, "converted from the embedded GGUF into a temporary directory"


def plain_generate(backend, requests: list[ChatRequest], max_new_tokens: int) -> tuple[int, float, float]:
    """Baseline: `model.generate` on one prompt at a time, no engine, no padding."""
    import torch

    from janus_align.models.prompt_format import encode_prompt

    tokens, started, cpu_started = 0, time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for request in requests:
            ids = torch.tensor([encode_prompt(backend.tokenizer, backend.render(request), "chat_template")])
            output = backend.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=backend._eos_ids,
                pad_token_id=backend.tokenizer.pad_token_id,
            )
            new = output[0, ids.shape[1] :].tolist()
            stop = next((k for k, t in enumerate(new) if t in backend._eos_ids), None)
            tokens += len(new) if stop is None else stop + 1
    return tokens, time.perf_counter() - started, time.process_time() - cpu_started


def hf_batch_generate(
    backend, requests: list[ChatRequest], max_new_tokens: int, batch_size: int
) -> tuple[int, float, float]:
    """`model.generate` on left-padded batches: every row runs until the batch's longest ends."""
    import torch

    from janus_align.models.prompt_format import ADD_SPECIAL_TOKENS

    tokens, started, cpu_started = 0, time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for start in range(0, len(requests), batch_size):
            prompts = [backend.render(r) for r in requests[start : start + batch_size]]
            encoded = backend.tokenizer(
                prompts, return_tensors="pt", padding=True, add_special_tokens=ADD_SPECIAL_TOKENS["chat_template"]
            )
            output = backend.model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=backend._eos_ids,
                pad_token_id=backend.tokenizer.pad_token_id,
            )
            for row in output[:, encoded["input_ids"].shape[1] :].tolist():
                stop = next((k for k, t in enumerate(row) if t in backend._eos_ids), None)
                tokens += len(row) if stop is None else stop + 1
    return tokens, time.perf_counter() - started, time.process_time() - cpu_started


def engine_generate(backend, requests: list[ChatRequest], batch_size: int) -> tuple[int, float, float]:
    """The engine on a fresh in-memory cache, so every request is generated.

    Returns (generated tokens, wall seconds, CPU seconds of this process)."""
    backend.config = backend.config.model_copy(update={"batch_size": batch_size})
    engine = LLMEngine(backend, RequestCache(":memory:"))
    started, cpu_started = time.perf_counter(), time.process_time()
    results = engine.complete(requests)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert all(r.ok for r in results)
    return engine.usage.completion_tokens, elapsed, cpu


def bench_transformers(model_dir: str | None, n_prompts: int, max_new_tokens: int, dtype: str) -> list[str]:
    import torch

    from janus_align.llm.transformers_backend import TransformersBackend

    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        path, origin = smollm2_checkpoint(model_dir, Path(scratch))
        backend = TransformersBackend(path, TransformersSettings(dtype=dtype))
        lines.append(
            f"model {path.name} ({origin}; ready in {time.perf_counter() - started:.0f} s), "
            f"dtype {dtype} = {backend.model.dtype}, {torch.get_num_threads()} threads "
            f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), greedy, "
            f"max_new_tokens {max_new_tokens}, {n_prompts} prompts"
        )
        sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0, repetition_penalty=1.0)
        # Mixed answer lengths, as the pipeline's requests have: essays run to max_new_tokens,
        # one-line answers stop early (a batch of `generate` keeps computing them until the end).
        asks = ("Write a detailed, multi-paragraph essay about {}.", "In one short sentence: what is {}?")
        requests = [
            ChatRequest.of(asks[i % 2].format(TOPICS[i % len(TOPICS)]), sampling=sampling, seed=i)
            for i in range(n_prompts)
        ]
        plain_generate(backend, requests[:1], 4)  # warm-up: first-call allocations and kernels
        runs = {"plain generate, batch 1": plain_generate(backend, requests, max_new_tokens)}
        runs["plain generate, batch 16"] = hf_batch_generate(backend, requests, max_new_tokens, 16)
        for batch_size in (1, 8, 16, 32):
            runs[f"engine, batch {batch_size}"] = engine_generate(backend, requests, batch_size)
    # Wall-clock rates are the figures; rates per CPU-second are shown beside them because
    # other jobs on a shared machine slow wall-clock time (not CPU time) unevenly between runs.
    tokens, seconds, cpu = runs["plain generate, batch 1"]
    baseline, baseline_cpu = tokens / seconds, tokens / cpu
    lines.append(
        f"{'transformers backend':<26} {'tokens':>7} {'seconds':>8} {'tok/s':>8} {'vs plain bs1':>13}"
        f" {'tok/CPU-s':>10} {'vs plain':>9}"
    )
    for name, (tokens, seconds, cpu) in runs.items():
        rate, rate_cpu = tokens / seconds, tokens / cpu
        lines.append(
            f"  {name:<24} {tokens:>7} {seconds:>8.1f} {rate:>8.1f} {rate / baseline:>12.2f}x"
            f" {rate_cpu:>10.1f} {rate_cpu / baseline_cpu:>8.2f}x"
        )
    best = max(runs[f"engine, batch {size}"][0] / runs[f"engine, batch {size}"][1] for size in (8, 16, 32))
    lines.append(
        f"  target batched >= 5x plain batch 1: {'met' if best >= 5 * baseline else 'MISSED'} "
        f"({best / baseline:.2f}x wall clock)"
    )
    return lines


def bench_openai(rounds: int) -> list[str]:
    """Each level sends `rounds` waves of `concurrency` distinct requests (nothing cached)."""
    lines = [f"{'openai backend':<26} {'requests':>8} {'seconds':>8} {'req/s':>8} {'ideal':>7} {'of ideal':>9}"]
    sampling = Sampling(max_new_tokens=16, temperature=0.0, top_p=1.0)
    met = False
    with serve_in_subprocess(LATENCY_S) as base_url, tempfile.TemporaryDirectory() as scratch:

        def engine(concurrency: int, name: str) -> LLMEngine:
            config = OpenAISettings(model="loopback", base_url=base_url, max_concurrency=concurrency)
            return open_engine(config, cache_path=Path(scratch) / f"{name}.sqlite")

        engine(4, "warmup").complete([ChatRequest.of(f"warm-up {i}", sampling=sampling) for i in range(8)])
        for concurrency in (1, 8, 32):
            n = concurrency * rounds
            requests = [ChatRequest.of(f"c{concurrency} question {i}", sampling=sampling) for i in range(n)]
            measured = engine(concurrency, f"c{concurrency}")
            started = time.perf_counter()
            cpu_started = time.process_time()
            results = measured.complete(requests)
            seconds = time.perf_counter() - started
            cpu_ms = (time.process_time() - cpu_started) / n * 1000
            assert all(r.ok for r in results)
            rate, ideal = n / seconds, concurrency / LATENCY_S
            lines.append(
                f"  concurrency {concurrency:<12} {n:>8} {seconds:>8.2f} {rate:>8.1f} {ideal:>7.0f} "
                f"{rate / ideal:>8.1%}   (client CPU {cpu_ms:.1f} ms/request)"
            )
            met = rate >= 0.9 * ideal if concurrency == 32 else met
    lines.append(f"  target concurrency 32 >= 90% of ideal: {'met' if met else 'MISSED'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="checkpoint to measure (default: artifacts/models/base if SmolLM2)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="TransformersSettings.dtype of the transformers backend (auto: bf16 only where native)",
    )
    parser.add_argument("--rounds", type=int, default=20, help="waves of requests per openai concurrency level")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--skip-openai", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"llm_throughput: {os.cpu_count()} CPUs, load average {load:.1f} at start")
    if not args.skip_openai:
        print("\n".join(bench_openai(args.rounds)), flush=True)
    if not args.skip_transformers:
        print("\n".join(bench_transformers(args.model_dir, args.prompts, args.max_new_tokens, args.dtype)), flush=True)
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
