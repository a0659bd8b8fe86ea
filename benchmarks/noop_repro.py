"""Wall time of a no-op `make repro` (`janus preload -- dvc repro` with nothing to run) beside
plain `dvc repro`, in one invocation, interleaved, so a busy machine slows both alike.

    python benchmarks/noop_repro.py --project PATH --runs 5
    python benchmarks/noop_repro.py --project PATH --runs 5 --before-src /path/to/old/checkout/src

PATH is an up-to-date project (`dvc status` says "Data and pipelines are up to date", e.g. after
`make repro`). `--before-src` adds a third mode: the same preload command with another checkout's
package on PYTHONPATH (the code before a change). The load average is printed at start and end:
the figures only mean something beside their baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path


def time_once(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "up to date" not in done.stdout + done.stderr:
        raise SystemExit(f"{' '.join(command)}: not a no-op here (exit {done.returncode})\n{done.stdout}{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="an up-to-date project")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before-src", type=Path, help="another checkout's src/, timed as a third mode")
    args = parser.parse_args()
    env = dict(os.environ)
    modes = {
        "dvc repro (baseline)": (["dvc", "repro"], env),
        "janus preload -- dvc repro": (["janus", "preload", "--", "dvc", "repro"], env),
    }
    if args.before_src:
        before = {**env, "PYTHONPATH": str(args.before_src.resolve())}
        modes["janus preload -- dvc repro (before)"] = (["janus", "preload", "--", "dvc", "repro"], before)
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {args.runs} runs per mode, interleaved")
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.runs):
        for name, (command, mode_env) in modes.items():
            times[name].append(time_once(command, args.project, mode_env))
    baseline = statistics.median(times["dvc repro (baseline)"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:38s} median {median:6.2f} s  x{median / baseline:.2f}  {[round(t, 1) for t in values]}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
