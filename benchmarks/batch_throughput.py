"""Throughput of the openai_batch backend against the simulated Batch API, through the engine.

The simulator runs in its own process (`python -m janus_align.simulated_api`), so the client's
CPU is measured alone. Each run sends N distinct requests of about synthesis size (a 1 kB
prompt) through `open_engine` with a fresh request cache: JSONL written and uploaded, batches
created, polled, output files downloaded, joined by custom_id and committed to the cache. The
simulated batch takes `--batch-s` seconds however large it is, so the figure that says what
the client costs is the wall time outside that wait.

    python benchmarks/batch_throughput.py                       # 20,000 requests, 4 files
    python benchmarks/batch_throughput.py -n 50000 --per-file 50000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

from janus_align.config import OpenAIBatchSettings, Sampling  # noqa: E402
from janus_align.llm import (  # noqa: E402
    ChatRequest,
    open_engine,
    openai_batch,  # noqa: E402
)

PROMPT = "Write a system message for an assistant whose user prefers concise, well-sourced answers. " * 11


def serve(batch_s: float) -> tuple[subprocess.Popen[str], str]:
    """The simulator in a subprocess, and its base URL (the first line it prints)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "janus_align.simulated_api", "--batch-complete-after", str(batch_s)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if "simulated OpenAI API at" not in line:
        server.kill()
        raise RuntimeError(f"the simulator did not start: {line!r}")
    return server, line.rsplit(" ", 1)[1].strip()


def run(base_url: str, n: int, per_file: int, poll_s: float) -> dict[str, float]:
    openai_batch.MAX_REQUESTS_PER_FILE = per_file
    sampling = Sampling(max_new_tokens=128, temperature=0.8, top_p=0.9)
    requests = [ChatRequest.of(f"{i}. {PROMPT}", sampling=sampling, seed=i) for i in range(n)]
    config = OpenAIBatchSettings(model="gpt-4o-mini", base_url=base_url, poll_interval_s=poll_s, timeout_s=600.0)
    with tempfile.TemporaryDirectory() as scratch:
        engine = open_engine(config, cache_path=Path(scratch) / "llm.sqlite")
        cpu, wall = time.process_time(), time.perf_counter()
        results = engine.complete(requests)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        engine.close()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return {
        "requests": n,
        "files": -(-n // per_file),
        "wall_s": round(wall, 2),
        "requests_per_s": round(n / wall, 1),
        "client_cpu_ms_per_request": round(1000 * cpu / n, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20_000, help="requests")
    parser.add_argument("--per-file", type=int, default=5_000, help="requests per batch file")
    parser.add_argument("--batch-s", type=float, default=2.0, help="seconds a simulated batch takes")
    parser.add_argument("--poll-s", type=float, default=0.5, help="poll_interval_s")
    args = parser.parse_args()
    server, base_url = serve(args.batch_s)
    try:
        figures = run(base_url, args.n, args.per_file, args.poll_s)
    finally:
        server.kill()
        server.wait()
    figures["simulated_batch_s"] = args.batch_s
    figures["wall_outside_batch_s"] = round(figures["wall_s"] - args.batch_s, 2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
