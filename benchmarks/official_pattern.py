"""Our openai client against the official Janus repository's request pattern, side by side (issue 14.8).

The official repo (kaistAI/Janus, utils/models/openai_utils.py) sends requests in batches of 100
with a barrier: `asyncio.gather` over 100 requests, and the next 100 only once the slowest of
them has answered. With latencies drawn from a lognormal (sigma 0.5) the barrier waits for the
maximum of 100 draws each time, about 3.1x the mean latency, so its throughput is about a third
of what 100 requests in flight sustain. Our client (the project's openai backend through
`janus_align.llm.engine.open_engine`, request cache in a temp dir) keeps `max_concurrency` 100
requests in flight at all times.

Both run against the simulated OpenAI API (janus_align.simulated_api) in its own process, with no
rate limit (the width, 100, is the only limit, equal for both), on the same requests. The
official pattern is re-written here with the SDK's `chat.completions.create`, as the repo calls
it; its 100-RPM `AsyncLimiter` is left out (with it, it would run at 1.7 req/s whatever the width).

    python benchmarks/official_pattern.py                        # 2,000 requests, median 1 s
    python benchmarks/official_pattern.py --requests 500 --latency-median 0.5

Target: ours >= 2.5x the official pattern's throughput (ideal about 3.1x at sigma 0.5).
Takes about 2 minutes at the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

from janus_align.config import OpenAISettings, Sampling
from janus_align.llm import ChatRequest, open_engine
from janus_align.simulated_api.server import SimSettings, remote_stats, serve_in_subprocess

WIDTH = 100
KEY_ENV = "JANUS_BENCH_SIM_KEY"
SAMPLING = Sampling(max_new_tokens=128, temperature=0.7, top_p=0.9)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ideal_ratio(sigma: float, width: int, draws: int = 20_000) -> float:
    """E[max of `width` lognormal draws] / E[one draw]: what the barrier costs, by Monte Carlo."""
    rng = random.Random(0)
    batches = draws // width
    mean_max = sum(max(rng.lognormvariate(0, sigma) for _ in range(width)) for _ in range(batches)) / batches
    return mean_max / math.exp(sigma**2 / 2)


def official_pattern(base_url: str, requests: list[ChatRequest], model: str) -> None:
    """Batches of WIDTH with a barrier, as the official repo's `OpenAILLM.completions` does."""

    async def one(client: openai.AsyncOpenAI, request: ChatRequest) -> str:
        completion = await client.chat.completions.create(
            model=model,
            messages=list(request.messages),  # type: ignore[arg-type]
            max_tokens=SAMPLING.max_new_tokens,
            temperature=SAMPLING.temperature,
            top_p=SAMPLING.top_p,
        )
        return (completion.choices[0].message.content or "").strip()

    async def run() -> None:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="sim-key", max_retries=5) as client:
            for start in range(0, len(requests), WIDTH):
                answers = await asyncio.gather(*(one(client, r) for r in requests[start : start + WIDTH]))
                assert all(answers)

    asyncio.run(run())


def ours(base_url: str, requests: list[ChatRequest], model: str, cache_dir: Path) -> None:
    settings = OpenAISettings(
        backend="openai", model=model, base_url=base_url, api_key_env=KEY_ENV, max_concurrency=WIDTH
    )
    results = open_engine(settings, cache_path=cache_dir / "llm.sqlite").complete(requests)
    assert all(result.ok for result in results), next(result.error for result in results if not result.ok)


def measure(name: str, run: Any, base_url: str, count: int) -> dict[str, float]:
    before = remote_stats(base_url)["requests"]
    cpu, started = cpu_s(), time.perf_counter()
    run()
    wall, cpu_used = time.perf_counter() - started, cpu_s() - cpu
    sent = remote_stats(base_url)["requests"] - before
    print(
        f"{name:<34} {count:>6} requests  {wall:7.1f} s  {count / wall:7.1f} req/s  {cpu_used / count * 1000:5.2f} ms CPU/request  ({sent} sent)"
    )
    return {"wall_s": wall, "rps": count / wall, "cpu_ms": cpu_used / count * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency-median", type=float, default=1.0, help="seconds (the lognormal's median)")
    parser.add_argument("--latency-sigma", type=float, default=0.5)
    parser.add_argument("--model", default="gpt-4o")
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, "sim-key")
    os.environ.setdefault("TQDM_DISABLE", "1")
    prompts = [
        f"Explain topic number {index} to a curious student in three sentences." for index in range(args.requests)
    ]
    requests = [ChatRequest.of(prompt, sampling=SAMPLING, seed=0) for prompt in prompts]
    settings = SimSettings(latency_median_s=args.latency_median, latency_sigma=args.latency_sigma)
    ideal = ideal_ratio(args.latency_sigma, WIDTH)
    print(
        f"simulated API: lognormal latency, median {args.latency_median} s, sigma {args.latency_sigma}; "
        f"no rate limit; width {WIDTH}; {os.cpu_count()} CPUs"
    )
    with serve_in_subprocess(settings) as base_url, tempfile.TemporaryDirectory() as scratch:
        official = measure(
            f"official pattern ({WIDTH} + barrier)",
            lambda: official_pattern(base_url, requests, args.model),
            base_url,
            len(requests),
        )
        mine = measure(
            f"ours (max_concurrency {WIDTH})",
            lambda: ours(base_url, requests, args.model, Path(scratch)),
            base_url,
            len(requests),
        )
    ideal_rps = WIDTH / (args.latency_median * math.exp(args.latency_sigma**2 / 2))
    ratio = mine["rps"] / official["rps"]
    print(f"ideal at width {WIDTH}: {ideal_rps:.1f} req/s (ours reaches {mine['rps'] / ideal_rps:.0%})")
    print(
        f"ratio ours / official: {ratio:.2f}x (ideal {ideal:.2f}x; target >= 2.5x) -> {'PASS' if ratio >= 2.5 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
