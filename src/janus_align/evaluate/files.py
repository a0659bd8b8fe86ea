"""Where the evaluation stages write, per candidate model (dvc.yaml names the same paths)."""

from __future__ import annotations

from pathlib import Path

from janus_align import paths

RESPONSES_DIR = paths.EVAL / "responses"
JUDGMENTS_DIR = paths.EVAL / "judgments"
OFFICIAL_DIR = paths.EVAL / "official"
EVAL_METRICS_DIR = paths.METRICS / "eval"
LEADERBOARD = paths.METRICS / "leaderboard.json"
PER_DIMENSION_PLOT = paths.PLOTS / "per_dimension.csv"
PER_SOURCE_PLOT = paths.PLOTS / "per_source.csv"
REPORT_DIR = paths.REPORTS / "eval"


def responses_file(model: str) -> Path:
    return RESPONSES_DIR / f"{model}.jsonl"


def judgments_file(model: str) -> Path:
    return JUDGMENTS_DIR / f"{model}.jsonl"


def official_file(model: str) -> Path:
    """The official evaluation JSON, named as the paper's scripts name it."""
    return OFFICIAL_DIR / f"{model}_evaluation.json"


def eval_metrics_file(model: str) -> Path:
    return EVAL_METRICS_DIR / f"{model}.json"
