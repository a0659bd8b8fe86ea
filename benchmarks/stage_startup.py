"""Wall time of one `janus` command run as a fresh process versus forked by `janus preload`.

    python benchmarks/stage_startup.py                                  # janus generate --model base
    python benchmarks/stage_startup.py --runs 5 -- janus judge --model base

Run it in a project where the command has run once (after `make repro`): its LLM requests are
then answered from the request cache, so what is timed is what every stage pays before and
after its own work (imports, MLflow store, model load). Both modes run the same command the
same number of times in this one invocation; the preloaded runs start once the preloading
process is serving (its one-off import time is printed by `janus preload` itself).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_COMMAND = ["janus", "generate", "--model", "base"]


def time_runs(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def wait_for_server() -> None:
    from janus_align.preload import ask_to_preload

    ask_to_preload()  # the preloading process imports only once a `janus` command asks
    socket_path = Path(os.environ["JANUS_PRELOAD_SOCKET"])
    while not socket_path.exists():
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--served", action="store_true", help=argparse.SUPPRESS)  # inside `janus preload`
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = (args.command[1:] if args.command[:1] == ["--"] else args.command) or DEFAULT_COMMAND
    if args.served:
        wait_for_server()
        print(json.dumps(time_runs(command, args.runs)))
        return
    plain = time_runs(command, args.runs)
    inner = [sys.executable, __file__, "--served", "--runs", str(args.runs), "--", *command]
    done = subprocess.run(["janus", "preload", "--", *inner], check=True, capture_output=True, text=True)
    served = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"command: {' '.join(command)} ({args.runs} runs each)")
    print(f"fresh process  median {statistics.median(plain):6.2f} s  {[round(t, 2) for t in plain]}")
    print(f"preloaded      median {statistics.median(served):6.2f} s  {[round(t, 2) for t in served]}")
    print(f"speedup        {statistics.median(plain) / statistics.median(served):.2f}x")
    print(next((line for line in done.stderr.splitlines() if "janus preload: serving" in line), ""))


if __name__ == "__main__":
    main()
