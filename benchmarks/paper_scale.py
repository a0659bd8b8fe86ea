"""The pipeline's non-model work and its API client at the paper's size (issue 14.7).

Part 1, the instruction stage: the benchmark writes a pool of `--pool` instructions (default
200,000) with planted exact duplicates (case and whitespace variants), near duplicates (one word
changed), bench overlaps (a bench prompt with a few words added) and persona instructions, then
runs the real stage (`janus_align.synth.instructions.run`, paper profile, hub sources off) on it
in a scratch folder, in a process of its own: wall time, peak RSS, what each filter removed
against what was planted.

Part 2, a scaled synthesis run: the paper profile's teacher pointed at the simulated OpenAI API
(janus_align.simulated_api, own process) at a named tier, `--instructions N` instructions through
preferences, system_messages and responses (the real stages, request cache on disk), then
assemble, validate (Great Expectations) and the DVC hashing of the outputs: wall time per stage,
requests/s achieved against the tier's request limit, client CPU per request, peak RSS, request
cache size, 429s met; then the extrapolation to 65,653 instructions at sync and batch prices.

    python benchmarks/paper_scale.py                         # both parts, 200,000-pool, 300 instructions
    python benchmarks/paper_scale.py --pool 200000 --skip-synthesis
    python benchmarks/paper_scale.py --instructions 2000 --rpm 5000 --tpm 2000000 --latency-median 2

Targets (issue 14.7): peak memory under 8 GiB at full size; non-model work under 10 minutes;
>= 90 % of the tier's request limit sustained.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAPER_INSTRUCTIONS = 65_653
PAPER_ROWS = 196_959

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TQDM_DISABLE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
}.items():
    os.environ.setdefault(_name, _value)

_SYLLABLES = "ka lo mi nu pe ra si to vu za be co du fa gi ho ju ke li mo na pi qu re sa te vi wo xe yu".split()
_VERBS = ["Explain", "Describe", "Compare", "Summarize", "List the steps of", "Give advice on", "Outline", "Discuss"]
_ROLES = ["a senior developer", "a travel agent", "my personal chef", "a pirate", "a strict teacher"]


def _vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def write_pool(path: Path, size: int, bench_prompts: list[str], seed: int = 0, max_words: int = 60) -> dict[str, int]:
    """A pool of `size` rows, ~90 % distinct instructions plus planted duplicates, overlaps, personas.

    Distinct instructions have 12 to `max_words` words (60: ~280 characters on average).
    """
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    planted = {"exact_duplicate": 0, "near_duplicate": 0, "bench_overlap": 0, "persona": 0}
    bases: list[str] = []
    unused_bench = list(bench_prompts)
    rng.shuffle(unused_bench)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(size):
            roll = rng.random()
            if bases and roll < 0.04:
                text, kind = "  " + rng.choice(bases).upper().replace(" ", "   ") + " ", "exact_duplicate"
            elif bases and roll < 0.08:
                words = rng.choice(bases).split()
                words[rng.randrange(1, len(words))] = rng.choice(vocabulary)
                text, kind = " ".join(words), "near_duplicate"
            elif roll < 0.085 and unused_bench:
                # Each bench prompt once: two copies of one would also be each other's near duplicates.
                text, kind = unused_bench.pop() + " Answer in plain words.", "bench_overlap"
            elif roll < 0.095:
                words = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(12, 30)))
                text, kind = f"Act as {rng.choice(_ROLES)} and tell me about {words}.", "persona"
            else:
                words = [rng.choice(vocabulary) for _ in range(rng.randint(12, max_words))]
                text, kind = f"{rng.choice(_VERBS)} {' '.join(words)}.", ""
                bases.append(text)
            if kind:
                planted[kind] += 1
            out.write(json.dumps({"instruction": text, "input": "", "source": kind or "synthetic"}) + "\n")
    return planted


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def paper_params(overrides: dict[str, Any], sync_teacher: bool = False) -> Any:
    """The paper profile (on the default params.yaml) with `overrides` merged in, validated.

    `sync_teacher`: the teacher on `backend: openai` (the profile's is openai_batch) without the
    batch-only keys, for a run paced against a tier's rate limits.
    """
    from janus_align.config.load import parse_params
    from janus_align.config.profiles import deep_merge, profile_params
    from janus_align.config.schema import OpenAIBatchSettings, OpenAISettings

    merged = profile_params("paper", base=REPO / "params.yaml", profiles_dir=REPO / "profiles")
    if sync_teacher:
        batch_only = set(OpenAIBatchSettings.model_fields) - set(OpenAISettings.model_fields)
        merged["teacher"] = {k: v for k, v in merged["teacher"].items() if k not in batch_only} | {"backend": "openai"}
    return parse_params(deep_merge(merged, overrides), "paper profile + benchmark overrides")


def scratch_workdir(root: Path) -> Path:
    """A folder with the bundled data/ (the stages read and write relative paths)."""
    work = root / "work"
    shutil.copytree(REPO / "src" / "janus_align" / "default_data", work / "data")
    return work


# ---- part 1: the instruction stage --------------------------------------------------------------


def child_instructions(work: Path) -> dict[str, Any]:
    """Runs in its own process (so peak RSS is the stage's): the real instructions stage."""
    os.chdir(work)
    from janus_align.synth import instructions

    params = paper_params({"synth": {"include_hub_sources": False}})
    started, cpu = time.perf_counter(), cpu_s()
    rows = instructions.run(params)
    wall = time.perf_counter() - started
    metrics = json.loads(Path("metrics/instructions.json").read_text())
    return {
        "wall_s": wall,
        "cpu_s": cpu_s() - cpu,
        "peak_rss_mib": peak_rss_mib(),
        "sampled": len(rows),
        "read": metrics["read"],
        "removed": metrics["removed"],
    }


def part_instructions(root: Path, pool_size: int, max_words: int) -> dict[str, Any]:
    work = scratch_workdir(root)
    bench = [json.loads(line)["prompt"] for line in (work / "data/bench/prompts.jsonl").read_text().splitlines()]
    (work / "data/instructions/pool.jsonl").unlink()
    started = time.perf_counter()
    planted = write_pool(work / "data/instructions/pool.jsonl", pool_size, bench, max_words=max_words)
    print(f"pool: {pool_size} rows written in {time.perf_counter() - started:.1f} s; planted {planted}")
    result = run_child("instructions", work)
    result["planted"] = planted
    print(
        f"instructions stage: {result['read']} read -> {result['sampled']} sampled in {result['wall_s']:.1f} s "
        f"(CPU {result['cpu_s']:.1f} s), peak RSS {result['peak_rss_mib']:.0f} MiB"
    )
    for name, count in result["removed"].items():
        print(f"  removed {name:<16} {count:>7}   planted {planted.get(name, '-')}")
    return result


# ---- part 2: a scaled synthesis run against the simulated API -----------------------------------

# Width over what rpm x mean latency needs: the lognormal tail and the client's own time.
WIDTH_MARGIN = 1.5
SYNTHESIS_STAGES = ("instructions", "preferences", "system_messages", "responses", "assemble", "validate")
KEY_ENV = "JANUS_BENCH_SIM_KEY"


def dvc_hash_s(folders: list[Path]) -> tuple[float, int, int]:
    """(seconds, files, bytes) to hash every file under `folders` as DVC does (md5 of the content)."""
    from dvc_data.hashfile.hash import file_md5

    files = [path for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()]
    started = time.perf_counter()
    for path in files:
        file_md5(str(path))
    return time.perf_counter() - started, len(files), sum(path.stat().st_size for path in files)


def run_stages(names: tuple[str, ...], params: Any, base_url: str | None) -> dict[str, Any]:
    """Each stage as the CLI runs it (in its MLflow run): wall, CPU, peak RSS, what the server saw."""
    import importlib

    from janus_align import tracking
    from janus_align.simulated_api.server import remote_stats
    from janus_align.stages import STAGES

    counters = ("requests", "ok", "rate_limited", "completion_tokens", "prompt_tokens")
    stages: dict[str, Any] = {}
    for name in names:
        before = remote_stats(base_url) if base_url else dict.fromkeys(counters, 0)
        cpu, started = cpu_s(), time.perf_counter()
        with tracking.stage_run(name, params):
            importlib.import_module(STAGES[name].module).run(params)
        after = remote_stats(base_url) if base_url else before
        wall = time.perf_counter() - started
        stages[name] = {"wall_s": wall, "cpu_s": cpu_s() - cpu, "peak_rss_mib": peak_rss_mib()}
        stages[name] |= {key: after[key] - before[key] for key in counters}
        print(f"  {name}: {wall:.1f} s, {stages[name]['requests']} requests", file=sys.stderr)
    return stages


def outputs_summary() -> dict[str, Any]:
    """DVC hashing of the synthesis outputs, the request cache's size, the process's peak RSS."""
    from janus_align import paths

    hash_s, files, size = dvc_hash_s([paths.SYNTH, paths.COLLECTION])
    return {
        "dvc_hash_s": hash_s,
        "hashed_files": files,
        "hashed_bytes": size,
        "cache_bytes": paths.LLM_CACHE.stat().st_size if paths.LLM_CACHE.exists() else 0,
        "peak_rss_mib": peak_rss_mib(),
    }


def synthesis_params(base_url: str, count: int, concurrency: int) -> Any:
    teacher = {"base_url": base_url, "api_key_env": KEY_ENV, "max_concurrency": concurrency}
    return paper_params(
        {"teacher": teacher, "synth": {"include_hub_sources": False, "num_instructions": count}}, sync_teacher=True
    )


def child_synthesis(work: Path, base_url: str, count: int, concurrency: int) -> dict[str, Any]:
    """Runs in its own process: the synthesis stages as the CLI runs them (each in its MLflow run)."""
    os.chdir(work)
    os.environ[KEY_ENV] = "sim-key"
    stages = run_stages(SYNTHESIS_STAGES, synthesis_params(base_url, count, concurrency), base_url)
    return {"stages": stages, **outputs_summary()}


def tile_responses(path: Path, rows: int) -> int:
    """Copies of the run's responses under new instruction ids (and a marked prompt) up to `rows`:
    assemble and validate at the paper's row count without the hours of requests behind it."""
    originals = path.read_text(encoding="utf-8").splitlines()
    written = 0
    with path.open("w", encoding="utf-8") as out:
        for copy in range(-(-rows // len(originals))):
            for line in originals[: rows - written]:
                row = json.loads(line)
                if copy:
                    row["instruction_id"] = f"{row['instruction_id']}c{copy}"
                    row["id"] = f"{row['instruction_id']}-{row['set_index']}"
                    row["prompt"] = f"{row['prompt']} (copy {copy})"
                out.write(json.dumps(row) + "\n")
                written += 1
    return written


def child_tiled(work: Path, base_url: str, count: int, concurrency: int, rows: int) -> dict[str, Any]:
    """Runs in its own process: assemble and validate on the run's responses tiled to `rows`."""
    from janus_align import paths

    os.chdir(work)
    os.environ[KEY_ENV] = "sim-key"
    tiled = tile_responses(paths.SYNTH_RESPONSES, rows)
    stages = run_stages(("assemble", "validate"), synthesis_params(base_url, count, concurrency), None)
    return {"rows": tiled, "stages": stages, **outputs_summary()}


def part_synthesis(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    from janus_align.llm.openai_backend import width_for
    from janus_align.simulated_api.server import SimSettings, serve_in_subprocess

    work = scratch_workdir(root)
    bench = [json.loads(line)["prompt"] for line in (work / "data/bench/prompts.jsonl").read_text().splitlines()]
    (work / "data/instructions/pool.jsonl").unlink()
    write_pool(work / "data/instructions/pool.jsonl", int(args.instructions * 1.25) + 100, bench)
    settings = SimSettings(
        rpm=args.rpm,
        tpm=args.tpm,
        latency_median_s=args.latency_median,
        latency_sigma=args.latency_sigma,
        limit_window_s=args.limit_window,
    )
    mean_latency = args.latency_median * math.exp(args.latency_sigma**2 / 2)
    if not args.concurrency:
        # More width than the limit needs costs nothing (the pacer keeps to the tier's rate);
        # less caps the run at width / latency (the 73-75 % of the first run, at width 48).
        args.concurrency = width_for(args.rpm, mean_latency, margin=WIDTH_MARGIN)
    print(
        f"simulated tier: {args.rpm:.0f} RPM, {args.tpm:.0f} TPM (window {args.limit_window} s), "
        f"lognormal latency median {args.latency_median} s sigma {args.latency_sigma} (mean {mean_latency:.3f} s); "
        f"teacher backend openai, max_concurrency {args.concurrency} "
        f"(the limit needs {width_for(args.rpm, mean_latency, margin=1.0)} in flight); {args.instructions} instructions"
    )
    with serve_in_subprocess(settings) as base_url:
        result = run_child(
            "synthesis",
            work,
            "--base-url",
            base_url,
            "--instructions",
            str(args.instructions),
            "--concurrency",
            str(args.concurrency),
        )
    report_synthesis(result, args)
    if args.tile_rows:
        result["tiled"] = run_child(
            "tiled",
            work,
            "--base-url",
            base_url,
            "--instructions",
            str(args.instructions),
            "--concurrency",
            str(args.concurrency),
            "--tile-rows",
            str(args.tile_rows),
        )
        report_tiled(result["tiled"])
    return result


def report_tiled(tiled: dict[str, Any]) -> None:
    stages = tiled["stages"]
    print(
        f"at {tiled['rows']:,} rows (the run's responses tiled): "
        + ", ".join(f"{name} {s['wall_s']:.1f} s (CPU {s['cpu_s']:.1f} s)" for name, s in stages.items())
        + f"; DVC hashing {tiled['dvc_hash_s']:.2f} s ({tiled['hashed_files']} files, "
        f"{tiled['hashed_bytes'] / 2**20:.0f} MiB); peak RSS {tiled['peak_rss_mib']:.0f} MiB"
    )


def report_synthesis(result: dict[str, Any], args: argparse.Namespace) -> None:
    allowed = args.rpm / 60
    model_stages = ("preferences", "system_messages", "responses")
    # What the limits let through in a stage's wall time: the rate, plus the window's burst a
    # full bucket allows at the start (without it a short stage reads over 100 %).
    print(
        f"{'stage':<16} {'wall s':>8} {'requests':>9} {'req/s':>7} {'of limit':>8} {'429s':>6} {'CPU ms/req':>10} {'peak MiB':>9}"
    )
    for name, stage in result["stages"].items():
        rps = stage["requests"] / stage["wall_s"] if stage["requests"] else 0.0
        cpu = f"{stage['cpu_s'] / stage['requests'] * 1000:.2f}" if stage["requests"] else "-"
        let_through = allowed * (stage["wall_s"] + args.limit_window)
        share = f"{stage['requests'] / let_through:.0%}" if stage["requests"] else "-"
        print(
            f"{name:<16} {stage['wall_s']:>8.1f} {stage['requests']:>9} {rps:>7.1f} {share:>8} "
            f"{stage['rate_limited']:>6} {cpu:>10} {stage['peak_rss_mib']:>9.0f}"
        )
    print(
        f"DVC hashing of artifacts/synth + artifacts/collection: {result['dvc_hash_s']:.2f} s "
        f"({result['hashed_files']} files, {result['hashed_bytes'] / 2**20:.1f} MiB); "
        f"request cache {result['cache_bytes'] / 2**20:.1f} MiB; peak RSS {result['peak_rss_mib']:.0f} MiB"
    )
    stages = result["stages"]
    ok = sum(stages[name]["ok"] for name in model_stages)
    scale = PAPER_INSTRUCTIONS / args.instructions
    tokens_in = sum(stages[name]["prompt_tokens"] for name in model_stages) * scale
    tokens_out = sum(stages[name]["completion_tokens"] for name in model_stages) * scale
    from janus_align.config.profiles import profile_params
    from janus_align.config.schema import Prices

    teacher = profile_params("paper", base=REPO / "params.yaml", profiles_dir=REPO / "profiles")["teacher"]
    prices, paper_width = Prices(**teacher["prices"]), teacher["max_concurrency"]
    sync = prices.cost_usd(int(tokens_in), int(tokens_out))
    batch = prices.batch().cost_usd(int(tokens_in), int(tokens_out))
    requests_full = ok * scale
    hours_at_limit = requests_full / allowed / 3600
    print(
        f"extrapolated to {PAPER_INSTRUCTIONS} instructions: {requests_full:,.0f} teacher requests, "
        f"{tokens_in / 1e6:.1f} M prompt + {tokens_out / 1e6:.1f} M completion tokens (the simulator's answer "
        f"lengths); at the profile's prices ${sync:,.0f} sync, ${batch:,.0f} batch; "
        f"at this tier's {args.rpm:.0f} RPM: {hours_at_limit:.1f} h of requests"
    )
    from janus_align.llm.openai_backend import width_for

    real_width = width_for(args.rpm, args.real_latency, margin=WIDTH_MARGIN)
    print(
        f"a real run at {args.real_latency:.0f} s a request reaches {args.rpm:.0f} RPM with max_concurrency "
        f"{real_width}; at the paper profile's {paper_width} it takes {requests_full / (paper_width / args.real_latency) / 3600:.1f} h; "
        f"the Batch API: within its 24 h window per batch"
    )


def run_child(part: str, work: Path, *extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", part, "--workdir", str(work), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=200_000, help="instructions in the generated pool")
    parser.add_argument("--max-words", type=int, default=60, help="longest pool instruction, in words")
    parser.add_argument("--skip-instructions", action="store_true")
    parser.add_argument("--skip-synthesis", action="store_true")
    parser.add_argument("--instructions", type=int, default=300, help="instructions of the synthesis run")
    parser.add_argument("--rpm", type=float, default=3000.0, help="the simulated tier's requests per minute")
    parser.add_argument("--tpm", type=float, default=2_000_000.0, help="the simulated tier's tokens per minute")
    parser.add_argument("--limit-window", type=float, default=6.0, help="seconds of burst the limits allow")
    parser.add_argument("--latency-median", type=float, default=0.5, help="simulated latency median, seconds")
    parser.add_argument("--real-latency", type=float, default=10.0, help="a real answer's seconds, to extrapolate")
    parser.add_argument("--latency-sigma", type=float, default=0.5, help="simulated latency lognormal sigma")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help=f"teacher max_concurrency (0: what the tier needs at the mean latency, x {WIDTH_MARGIN})",
    )
    parser.add_argument(
        "--tile-rows",
        type=int,
        default=0,
        help=f"then assemble and validate the responses tiled to this many rows (the paper: {PAPER_ROWS})",
    )
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        work = Path(args.workdir)
        if args.child == "instructions":
            result = child_instructions(work)
        elif args.child == "tiled":
            result = child_tiled(work, args.base_url, args.instructions, args.concurrency, args.tile_rows)
        else:
            result = child_synthesis(work, args.base_url, args.instructions, args.concurrency)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="paper-scale-") as scratch:
        if not args.skip_instructions:
            part_instructions(Path(scratch) / "instructions", args.pool, args.max_words)
        if not args.skip_synthesis:
            part_synthesis(Path(scratch) / "synthesis", args)


if __name__ == "__main__":
    main()
