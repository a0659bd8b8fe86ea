"""Pacing against a rate-limited API: requests/s achieved against what the limit allows, and 429s,
with the openai backend's pacing and without it (the SDK's retries alone).

    python benchmarks/pacing.py --rpm 600 --requests 1500 --concurrency 32 --latency 0.3

The simulated OpenAI API runs in a process of its own with a per-minute request bucket that
starts full (a minute's allowance) and refills continuously, as OpenAI's does; what it allows in
a run of T seconds is rpm + rpm/60 * T requests. Each run starts from a full bucket.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from janus_align.config import OpenAISettings, Sampling
from janus_align.llm import ChatRequest
from janus_align.llm import openai_backend as backend_module
from janus_align.llm.cache import RequestCache
from janus_align.llm.engine import LLMEngine
from janus_align.simulated_api.server import SimSettings, remote_stats, serve_in_subprocess


class _Unpaced(backend_module.Pacer):
    """No pacing: what the backend did before it read the headers."""

    async def wait(self, tokens: int) -> None:
        return None

    def observe(self, headers: Any, status: int) -> None:
        return None


def run(base_url: str, n: int, concurrency: int, paced: bool, cache_dir: Path) -> dict[str, Any]:
    os.environ.setdefault("JANUS_BENCH_KEY", "sim")
    config = OpenAISettings(
        model="gpt-4.1", base_url=base_url, api_key_env="JANUS_BENCH_KEY", max_concurrency=concurrency, max_retries=8
    )
    original = backend_module.Pacer
    backend_module.Pacer = original if paced else _Unpaced  # type: ignore[misc]
    try:
        engine = LLMEngine(backend_module.OpenAIBackend(config), RequestCache(cache_dir / f"paced-{paced}.sqlite"))
        sampling = Sampling(max_new_tokens=32, temperature=1.0)
        requests = [ChatRequest.of(f"q {i} {paced}", sampling=sampling, seed=i) for i in range(n)]
        before = remote_stats(base_url)
        started = time.monotonic()
        results = engine.complete(requests, desc="paced" if paced else "unpaced")
        wall = time.monotonic() - started
        after = remote_stats(base_url)
        engine.close()
    finally:
        backend_module.Pacer = original  # type: ignore[misc]
    ok = sum(r.ok for r in results)
    return {
        "paced": paced,
        "wall_s": wall,
        "ok": ok,
        "failed": n - ok,
        "http_requests": after["requests"] - before["requests"],
        "rate_limited": after["rate_limited"] - before["rate_limited"],
        "achieved_rps": ok / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpm", type=float, default=600)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.3, help="median latency (lognormal, sigma 0.5)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for paced in (False, True):
            # A fresh simulator each run: the bucket starts full, as for a run after an idle minute.
            settings = SimSettings(rpm=args.rpm, latency_median_s=args.latency, latency_sigma=0.5)
            with serve_in_subprocess(settings) as base_url:
                rows.append(run(base_url, args.requests, args.concurrency, paced, Path(tmp)))
    print(
        f"simulated API: {args.rpm:g} RPM (bucket of a minute, refilled continuously), latency median "
        f"{args.latency} s sigma 0.5; {args.requests} requests, max_concurrency {args.concurrency}, max_retries 8"
    )
    print(
        f"{'pacing':<8}{'wall s':>9}{'ok':>7}{'failed':>8}{'HTTP':>7}{'429s':>7}{'req/s':>8}{'allowed/s':>11}{'share':>8}"
    )
    for row in rows:
        allowed = (args.rpm + args.rpm / 60 * row["wall_s"]) / row["wall_s"]
        print(
            f"{'on' if row['paced'] else 'off':<8}{row['wall_s']:>9.1f}{row['ok']:>7}{row['failed']:>8}"
            f"{row['http_requests']:>7}{row['rate_limited']:>7}{row['achieved_rps']:>8.2f}{allowed:>11.2f}"
            f"{row['achieved_rps'] / allowed:>8.0%}"
        )


if __name__ == "__main__":
    main()
