"""The report's pairwise section: Fig. 3 outcomes, AlpacaEval 2.0 and Arena-Hard-Auto tables.

Read from the metrics files the pairwise stages write (metrics/pairwise.json, and whichever
metrics/alpaca_eval/<model>.json and metrics/arena_hard/<model>.json exist: those stages are
off by default), as (header, rows) of strings for the report's HTML and Markdown writers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.records import read_json_object

Table = tuple[list[str], list[list[str]]]


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(ci: Mapping[str, Any] | None) -> str:
    ci = ci or {}
    return f"[{_num(ci.get('ci_low'))}, {_num(ci.get('ci_high'))}]"


def _consistency(entry: Mapping[str, Any]) -> str:
    found = entry.get("position_consistency") or {}
    rate = found.get("rate")
    return f"{_num(None if rate is None else 100 * rate)}% of {found.get('pairs', 0)}"


def _per_model(directory: Path) -> dict[str, dict[str, Any]]:
    return (
        {path.stem: read_json_object(path) for path in sorted(directory.glob("*.json"))} if directory.is_dir() else {}
    )


def tables() -> dict[str, Table]:
    """{title: (header, rows)} for every pairwise evaluation whose metrics exist."""
    found: dict[str, Table] = {}
    if paths.PAIRWISE_METRICS.is_file():
        pairs = read_json_object(paths.PAIRWISE_METRICS).get("pairs", {})
        found["Pairwise, Fig. 3 (percent of games, both orders)"] = (
            [
                "candidate vs opponent",
                "win",
                "both good",
                "both bad",
                "loss",
                "tie+win",
                "position consistency",
                "unscored",
                "items: win/good/bad/loss/inconsistent",
            ],
            [
                [
                    name.replace("_vs_", " vs "),
                    *(f"{_num(e[k])} {_ci(e.get(k + '_ci'))}" for k in ("win", "both_good", "both_bad", "loss")),
                    _num(e["tie_plus_win"]),
                    _consistency(e),
                    f"{e['unscored']}/{e['games']}",
                    "/".join(str(n) for n in (e.get("per_item") or {}).values()),
                ]
                for name, e in pairs.items()
            ],
        )
    alpaca = _per_model(paths.ALPACA_EVAL_METRICS_DIR)
    if alpaca:
        found["AlpacaEval 2.0 (percent, vs the reference outputs)"] = (
            ["model", "LC win rate", "win rate", "length coef.", "mean chars (model / ref.)", "unscored"],
            [
                [
                    name,
                    f"{_num(e['lc_win_rate'])} {_ci(e['lc_win_rate_ci'])}",
                    f"{_num(e['win_rate'])} {_ci(e['win_rate_ci'])}",
                    _num(e["length_coefficient"], 2),
                    f"{_num(e['mean_output_chars'], 0)} / {_num(e['mean_reference_chars'], 0)}",
                    f"{e['unscored']}/{e['games']}",
                ]
                for name, e in alpaca.items()
            ],
        )
    arena = _per_model(paths.ARENA_HARD_METRICS_DIR)
    if arena:
        found["Arena-Hard-Auto (Bradley-Terry score vs the baseline)"] = (
            ["model", "baseline", "score", "style-controlled", "position consistency", "unscored"],
            [
                [
                    name,
                    e["baseline"],
                    f"{_num(e['score'])} {_ci(e['score_ci'])}",
                    f"{_num((e.get('style_controlled') or {}).get('score'))} {_ci(e.get('style_controlled_ci'))}"
                    if "style_controlled" in e
                    else "off",
                    _consistency(e),
                    f"{e['unscored']}/{e['games']}",
                ]
                for name, e in arena.items()
            ],
        )
    return found
