"""The few numbers declared as DVC metrics: what a user compares across runs and experiments.

`dvc exp show` makes a column of every key of every declared metrics file, and `dvc metrics show`
a row; with every stage's full record declared, the views ran to hundreds of columns. So each
stage that has a headline writes it to its own small file (declared under `metrics:` in
dvc.yaml), and keeps its full record where it always was, as a plain output (cache: false)
that no DVC view flattens:

    metrics/collection.json         assemble   rows per split
    metrics/validation_result.json  validate   success, failed expectations
    metrics/scores.json             report     bench score per candidate, with its interval
    metrics/champion.json           register   the champion's version and score, promoted or not

tests/test_headline_metrics.py pins dvc.yaml's metrics to exactly these keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADLINE_KEYS: dict[str, tuple[str, ...]] = {
    "collection": ("sft", "sft_small", "dpo", "orpo", "rm", "rm_test"),
    "validation_result": ("success", "failed_expectations"),
    "scores": ("score", "ci_low", "ci_high"),  # per candidate
    "champion": ("version", "bench_average", "promoted"),
}


def collection(split_counts: Mapping[str, int]) -> dict[str, int]:
    """Rows of every split (`rm_test`: the RM held-out part)."""
    return {key: int(split_counts[key]) for key in HEADLINE_KEYS["collection"]}


def validation_result(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the collection passed, and how many expectations failed over every split."""
    failed = sum(int(counts.get("failed", 0)) for counts in summary["splits"].values())
    return {"success": bool(summary["success"]), "failed_expectations": failed}


def scores(board: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """The bench average of each candidate with its bootstrap interval, in leaderboard order."""
    models = board["models"]
    return {
        name: {"score": models[name]["overall"], "ci_low": models[name]["ci_low"], "ci_high": models[name]["ci_high"]}
        for name in board["ranking"]
    }


def champion(result: Mapping[str, Any]) -> dict[str, Any]:
    """The champion after this registration: its version and bench average, and whether this
    run's version became it."""
    return {
        "version": result["champion_version"],
        "bench_average": result["champion_bench_average"],
        "promoted": bool(result["promoted"]),
    }
