"""`janus ablations queue|report`: the paper's ablations as DVC experiments.

`queue` queues one `dvc exp run --queue -S ...` per value of `ablations.sets_per_instruction`
(system messages per instruction, the paper's 1/2/3) and per `ablations.base_models` entry (a
base-model swap); `dvc queue start` (or `dvc exp run --run-all`) runs them, each a full pipeline
in its own temp workspace. `report` reads `dvc exp show --json` (or a recorded copy, `--from`)
and turns every experiment, finished or not, into the ablation table: its params, its state and
each candidate's bench score with interval from metrics/scores.json, in
reports/ablations/ablations.{md,json} and a plot (ablations.png: score against system messages
per instruction, one line per candidate and base model).

Not a DVC stage: what it reads lives in git refs (experiments), not in files a stage could
declare. Inside an experiment `register` only makes challengers (registry/register.py).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.config import Params, load_params
from janus_align.errors import JanusError

OUT_DIR = paths.REPORTS / "ablations"
SETS_KEY, BASE_KEY = "synth.sets_per_instruction", "model.base"


def queue_commands(params: Params) -> list[list[str]]:
    """The `dvc exp run --queue` argument lists, one experiment each, named after what they change."""
    commands = [
        ["exp", "run", "--queue", "-S", f"{SETS_KEY}={n}", "-n", f"ablation-sets-{n}"]
        for n in params.ablations.sets_per_instruction
    ]
    for base in params.ablations.base_models:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.").lower()  # a git ref name
        commands.append(["exp", "run", "--queue", "-S", f"{BASE_KEY}={base}", "-n", f"ablation-base-{slug}"])
    return commands


def _dvc(args: Sequence[str]) -> subprocess.CompletedProcess:
    from janus_align.installed_tools import installed_tool

    dvc = installed_tool("dvc")
    if dvc is None:
        raise JanusError("janus ablations needs dvc (run `make install`)")
    return subprocess.run([dvc, *args], capture_output=True, text=True)


def queue(params: Params) -> list[str]:
    """Queue every ablation; the names queued."""
    names = []
    for command in queue_commands(params):
        done = _dvc(command)
        if done.returncode:
            raise JanusError(f"`dvc {' '.join(command)}` failed: {(done.stderr or done.stdout).strip()}")
        names.append(command[-1])
        print(f"ablations: queued {command[-1]} ({command[4]})")
    print("ablations: run them with `dvc queue start` (or `dvc exp run --run-all`), then `janus ablations report`")
    return names


def _param(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _row(rev: dict[str, Any], state: str) -> dict[str, Any]:
    data = rev.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    scores = ((data.get("metrics") or {}).get(str(paths.SCORES_METRICS)) or {}).get("data") or {}
    return {
        "name": rev.get("name") or str(rev.get("rev", ""))[:7],
        "rev": rev.get("rev"),
        "state": state if scores or state != "success" else "no scores",
        "sets_per_instruction": _param(params, SETS_KEY),
        "base_model": _param(params, BASE_KEY),
        "scores": {name: value for name, value in scores.items() if isinstance(value, dict)},
    }


def ablation_rows(exp_show: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per baseline commit and per experiment of `dvc exp show --json` (the workspace left out)."""
    if not isinstance(exp_show, list):
        raise JanusError("dvc exp show --json: expected a list of commits")
    rows = []
    for commit in exp_show:
        if commit.get("rev") == "workspace":
            continue
        rows.append({**_row(commit, "success"), "baseline": True})
        for group in commit.get("experiments") or []:
            state = ((group.get("executor") or {}).get("state")) or "success"
            for rev in group.get("revs") or []:
                rows.append({**_row(rev, state), "baseline": False})
    return rows


def _fmt(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.2f}"


def render_markdown(rows: Sequence[dict[str, Any]]) -> str:
    candidates = list(dict.fromkeys(c for row in rows for c in row["scores"]))
    header = ["experiment", "system messages per instruction", "base model", "state", *candidates]
    lines = [
        "# Ablations (DVC experiments)",
        "",
        "Bench score per candidate with its bootstrap interval; rows from `dvc exp show --json`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [
            row["name"] + (" (baseline)" if row["baseline"] else ""),
            str(row["sets_per_instruction"]),
            str(row["base_model"]),
            row["state"],
        ]
        for candidate in candidates:
            score = row["scores"].get(candidate) or {}
            cells.append(f"{_fmt(score.get('score'))} [{_fmt(score.get('ci_low'))}, {_fmt(score.get('ci_high'))}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draw_plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Score against system messages per instruction, one line per (candidate, base model), with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for row in rows:
        if not isinstance(row["sets_per_instruction"], int):
            continue
        for candidate, score in row["scores"].items():
            if isinstance(score.get("score"), (int, float)):
                series.setdefault(f"{candidate} ({row['base_model']})", []).append((row["sets_per_instruction"], score))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, points in series.items():
        points = sorted({x: s for x, s in points}.items())
        xs = [x for x, _ in points]
        ys = [s["score"] for _, s in points]
        low = [y - (s.get("ci_low") if s.get("ci_low") is not None else y) for y, (_, s) in zip(ys, points)]
        high = [(s.get("ci_high") if s.get("ci_high") is not None else y) - y for y, (_, s) in zip(ys, points)]
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=label)
    ticks = sorted({x for points in series.values() for x, _ in points})
    if ticks:
        ax.set_xticks(ticks)
    ax.set_xlabel("system messages per instruction")
    ax.set_ylabel("bench score (1-5)")
    ax.set_title("Ablation: system messages per instruction")
    if series:
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(exp_show: list[dict[str, Any]], out_dir: Path = OUT_DIR) -> list[dict[str, Any]]:
    """Write ablations.md, ablations.json and ablations.png under `out_dir`; the rows."""
    rows = ablation_rows(exp_show)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ablations.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (out_dir / "ablations.md").write_text(render_markdown(rows), encoding="utf-8")
    draw_plot(rows, out_dir / "ablations.png")
    finished = sum(1 for row in rows if row["scores"])
    print(f"ablations: {finished}/{len(rows)} rows with scores -> {out_dir}/ablations.md, ablations.png")
    return rows


def read_exp_show(source: str | None) -> list[dict[str, Any]]:
    """`dvc exp show --json` run now, or the recorded output in `source`."""
    if source:
        try:
            return json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise JanusError(f"{source}: not a `dvc exp show --json` output ({exc})") from exc
    done = _dvc(["exp", "show", "--json"])
    if done.returncode:
        raise JanusError(f"`dvc exp show --json` failed: {(done.stderr or done.stdout).strip()}")
    return json.loads(done.stdout)


def main(args: argparse.Namespace) -> None:
    if args.action == "queue":
        queue(load_params(args.params))
    else:
        report(read_exp_show(args.source), Path(args.out))
