"""What the decoding loop's prefill/KV savings buy, on SmolLM2-135M, in one run.

1. KV cache: one decoding step of a batch whose rows hold a long context, with transformers'
   DynamicCache (appends by copying every layer's cache) against ours, preallocated per batch
   (llm/kv_cache.py `PreallocatedLayer`). Same tokens, greedy; ms per step and the ratio.
2. Shared prefix: prefill of a batch of prompts that open with the same template (the rubric
   generator's case: ~80 % of each prompt is the three example rubrics), run per row against run
   once and shared (`sample_batch(share_prefixes=...)`). Seconds and the ratio.
3. Grouped prefixes: the judge's case, 10 answers x 4 rubrics; after the shared task text each
   answer's instruction, response and reference are shared by its 4 rubric prompts
   (`plan_prefill` groups). Flat vs grouped prefill, seconds and the ratio.
4. Prompts of mixed lengths: the gold responses' case, 72 prompts (a system message and an
   instruction) of 30 to 270 tokens, prefilled in one pass padded to the longest against in
   chunks of similar length (`length_chunks`). Seconds and the ratio.

    python benchmarks/decoding_cache.py                  # artifacts/models/base, else builds one
    python benchmarks/decoding_cache.py --model-dir DIR --section 4

About 12 minutes on 2 cores, most of it the flat prefills it compares against.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import DynamicCache  # noqa: E402
from transformers.cache_utils import Cache  # noqa: E402

from janus_align.config import Sampling  # noqa: E402
from janus_align.llm.decoding import sample_batch  # noqa: E402
from janus_align.llm.kv_cache import PreallocatedLayer  # noqa: E402
from janus_align.models.checkpoint import load_causal_lm  # noqa: E402
from llm_throughput import smollm2_checkpoint  # noqa: E402

STEPS = 8


@torch.inference_mode()
def step_ms(model, rows: int, context: int, preallocated: bool) -> tuple[float, torch.Tensor]:
    """Mean ms of one decoding step after a `context`-token prefill, and the tokens chosen."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (rows, context), generator=generator)
    mask = torch.ones(rows, context, dtype=torch.long)
    if preallocated:
        layers = [PreallocatedLayer(context + STEPS) for _ in range(model.config.num_hidden_layers)]
        cache = Cache(layers=layers)
    else:
        cache = DynamicCache(config=model.config)
    token = (
        model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True, logits_to_keep=1)
        .logits[:, -1]
        .argmax(-1)
    )
    chosen = []
    started = time.perf_counter()
    for _ in range(STEPS):
        mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
        token = (
            model(input_ids=token[:, None], attention_mask=mask, cache=cache, use_cache=True).logits[:, -1].argmax(-1)
        )
        chosen.append(token)
    return (time.perf_counter() - started) / STEPS * 1000, torch.stack(chosen)


def prefill_s(model, prompts: list[list[int]], shared: bool, chunked: bool = True) -> float:
    """Seconds to prefill and take one token for every row (max_new_tokens=1)."""
    one_token = Sampling(max_new_tokens=1, temperature=0.0, top_p=1.0)
    started = time.perf_counter()
    sample_batch(model, prompts, 0, one_token, [], seeds=0, share_prefixes=shared, chunk_by_length=chunked)
    return time.perf_counter() - started


def tokens(generator: torch.Generator, count: int) -> list[int]:
    return torch.randint(100, 40000, (count,), generator=generator).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir")
    parser.add_argument(
        "--section", type=int, action="append", choices=[1, 2, 3, 4], help="run only these (repeatable)"
    )
    args = parser.parse_args()
    sections = set(args.section or [1, 2, 3, 4])
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint, origin = smollm2_checkpoint(args.model_dir, Path(scratch))
        model = load_causal_lm(checkpoint, "float32")
    print(f"SmolLM2-135M ({origin}), float32, {torch.get_num_threads()} threads")

    if 1 in sections:
        kv_cache(model)
    generator = torch.Generator().manual_seed(1)
    if 2 in sections:
        print("\n2. prefill of 40 prompts sharing a 600-token opening (+ 40-160 tokens each)")
        prefix = tokens(generator, 600)
        prompts = [prefix + tokens(generator, 40 + 3 * i) for i in range(40)]
        per_row, shared = prefill_s(model, prompts, shared=False), prefill_s(model, prompts, shared=True)
        print(f"   per row {per_row:.1f} s -> shared {shared:.1f} s  ({per_row / shared:.2f}x)")
    if 3 in sections:
        print("\n3. judge-like prefill: 150-token task, 10 answers of 250-350 tokens, 4 rubrics of 80-120 each")
        task = tokens(generator, 150)
        answers = [tokens(generator, 250 + 10 * i) for i in range(10)]
        prompts = [task + answer + tokens(generator, 80 + 10 * k) for answer in answers for k in range(4)]
        flat, grouped = prefill_s(model, prompts, shared=False), prefill_s(model, prompts, shared=True)
        print(f"   flat {flat:.1f} s -> grouped {grouped:.1f} s  ({flat / grouped:.2f}x)")
    if 4 in sections:
        print("\n4. prefill of 72 prompts of 30-270 tokens (gold responses), one padded pass vs length chunks")
        lengths = torch.randint(30, 271, (72,), generator=generator).tolist()
        prompts = [tokens(generator, n) for n in lengths]
        one_pass, chunked = prefill_s(model, prompts, True, chunked=False), prefill_s(model, prompts, True)
        print(
            f"   {sum(lengths)} prompt tokens, {72 * max(lengths)} padded: "
            f"one pass {one_pass:.1f} s -> chunks {chunked:.1f} s  ({one_pass / chunked:.2f}x)"
        )


def kv_cache(model) -> None:
    print("\n1. one decoding step, DynamicCache vs preallocated (same greedy tokens)")
    for rows, context in [(32, 300), (72, 300), (72, 600)]:
        dynamic, dynamic_tokens = step_ms(model, rows, context, preallocated=False)
        ours, our_tokens = step_ms(model, rows, context, preallocated=True)
        same = torch.equal(dynamic_tokens, our_tokens)
        print(
            f"   rows {rows:3d}, context {context}: {dynamic:6.0f} ms -> {ours:6.0f} ms  "
            f"({dynamic / ours:.2f}x, tokens identical: {same})"
        )


if __name__ == "__main__":
    main()
