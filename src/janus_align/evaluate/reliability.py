"""How far a judge's scores can be trusted: repeat stability, agreement with a second judge, a
calibration set with known grades, and the unscored-share gate.

The paper's judge (GPT-4-0613) is shut down, so every score rests on a replacement whose
agreement nobody had measured. The judge stage reports, on every run:

- repeat stability (`repeat_stability`): the spread of one (item, rubric)'s verdicts across
  `judge.repeats` (nothing to measure with one repeat);
- agreement with a second judge (`judge.second`, off by default): quadratic-weighted Cohen's
  kappa (the grades are ordinal 1-5: a 4 against a 5 is a smaller disagreement than a 1 against
  a 5) and Spearman's rho over the (item, rubric) pairs both judges scored (first repeat of each);
- the calibration set (data/calibration/judge.jsonl, written by the project and versioned with
  data/): a few answers with known grades the judge grades first; below
  `judge.calibration.min_kappa` the stage stops before any candidate is judged, so a judge that
  cannot tell a clear 1 from a clear 5 never produces scores that count;
- the unscored share (`check_unscored`): above `judge.max_unscored_rate` the stage fails, naming
  the candidate, the share and the judgments file.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from janus_align.bench.schema import BenchFileError, BenchItem
from janus_align.config.schema import JudgeConfig
from janus_align.errors import JanusError
from janus_align.evaluate.responses import Response
from janus_align.evaluate.rows import Judgment
from janus_align.records import iter_rows

GRADES = [1, 2, 3, 4, 5]


class JudgeReliabilityError(JanusError):
    """A judge's scores do not count: it failed calibration or left too many verdicts unscored."""


class CalibrationItem(BenchItem):
    """A bench row plus an answer and its known grade per rubric."""

    response: str = Field(min_length=1)
    grades: list[int] = Field(min_length=1)


def load_calibration(path: Path) -> list[CalibrationItem]:
    """The calibration set; a row whose `grades` do not line up with its rubrics names file and line."""
    items = []
    for where, row in iter_rows(path, CalibrationItem):
        if len(row.grades) != len(row.rubrics) or any(g not in GRADES for g in row.grades):
            raise BenchFileError(f"{where}: 'grades' must hold one grade 1-5 per rubric ({len(row.rubrics)})")
        items.append(row)
    if not items:
        raise BenchFileError(f"{path}: the calibration set is empty")
    return items


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def agreement(first: Sequence[int], second: Sequence[int]) -> dict[str, Any]:
    """Agreement of two lists of paired 1-5 grades: n, exact and within-one shares, quadratic-weighted
    Cohen's kappa and Spearman's rho (None where undefined: fewer than 2 pairs, or a constant rater)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    n = len(first)
    result: dict[str, Any] = {"n": n, "exact": None, "within_one": None, "weighted_kappa": None, "spearman": None}
    if n == 0:
        return result
    result["exact"] = sum(a == b for a, b in zip(first, second)) / n
    result["within_one"] = sum(abs(a - b) <= 1 for a, b in zip(first, second)) / n
    if n >= 2:
        with warnings.catch_warnings():  # a constant rater: both statistics are undefined (nan), reported as None
            warnings.simplefilter("ignore")
            kappa = cohen_kappa_score(first, second, labels=GRADES, weights="quadratic")
            rho = spearmanr(first, second).statistic if len(set(first)) > 1 and len(set(second)) > 1 else math.nan
        result["weighted_kappa"] = _finite(kappa)
        result["spearman"] = _finite(rho)
    return result


def _first_repeat(judgments: Iterable[Judgment]) -> dict[tuple[str, int], int]:
    """{(item id, rubric index): the verdict of the lowest scored repeat}."""
    out: dict[tuple[str, int], int] = {}
    for row in sorted(judgments, key=lambda r: r.repeat):
        if row.verdict is not None:
            out.setdefault((row.id, row.rubric_index), row.verdict)
    return out


def judge_agreement(first: Iterable[Judgment], second: Iterable[Judgment]) -> dict[str, Any]:
    """`agreement` over the (item, rubric) pairs both judges scored."""
    a, b = _first_repeat(first), _first_repeat(second)
    keys = sorted(set(a) & set(b))
    return agreement([a[k] for k in keys], [b[k] for k in keys])


def repeat_stability(judgments: Iterable[Judgment]) -> dict[str, Any]:
    """Spread across repeats of each (item, rubric) with at least two scored verdicts: how many,
    the mean and largest standard deviation (ddof 0: the spread of these repeats), and the share
    whose repeats all agree. All None with one repeat."""
    import numpy as np

    verdicts: dict[tuple[str, int], list[int]] = {}
    for row in judgments:
        if row.verdict is not None:
            verdicts.setdefault((row.id, row.rubric_index), []).append(row.verdict)
    spreads = [float(np.std(v)) for v in verdicts.values() if len(v) > 1]
    if not spreads:
        return {"pairs": 0, "mean_std": None, "max_std": None, "all_equal": None}
    return {
        "pairs": len(spreads),
        "mean_std": float(np.mean(spreads)),
        "max_std": max(spreads),
        "all_equal": sum(s == 0.0 for s in spreads) / len(spreads),
    }


def calibration_responses(items: Sequence[CalibrationItem]) -> dict[str, Response]:
    return {item.id: Response(item.id, item.response) for item in items}


def calibration_result(items: Sequence[CalibrationItem], judgments: Sequence[Judgment], path: Path) -> dict[str, Any]:
    """The judge's grades on the calibration set against the known ones (every scored repeat counts)."""
    known = {(item.id, i): grade for item in items for i, grade in enumerate(item.grades)}
    pairs = [(known[(row.id, row.rubric_index)], row.verdict) for row in judgments if row.verdict is not None]
    return {
        "file": str(path),
        "verdicts": len(judgments),
        "unscored": sum(1 for row in judgments if row.verdict is None),
        **agreement([k for k, _ in pairs], [v for _, v in pairs]),
        "grades": {f"{row.id}/{row.rubric_index}/{row.repeat}": row.verdict for row in judgments},
    }


def check_calibration(result: Mapping[str, Any], config: JudgeConfig, judge_model: str) -> None:
    """Raise unless the judge's weighted kappa on the calibration set reaches `judge.calibration.min_kappa`."""
    threshold = config.calibration.min_kappa
    kappa = result["weighted_kappa"]
    if threshold is None or (kappa is not None and kappa >= threshold):
        return
    shown = "undefined (constant or no grades)" if kappa is None else f"{kappa:.3f}"
    raise JudgeReliabilityError(
        f"judge {judge_model} failed calibration on {result['file']}: weighted kappa {shown} < "
        f"judge.calibration.min_kappa {threshold} over {result['n']}/{result['verdicts']} graded verdicts; "
        "its scores would not count, so no candidate was judged (use a stronger judge, or lower the threshold)"
    )


def check_unscored(model: str, metrics: Mapping[str, Any], config: JudgeConfig, judgments_file: Path) -> None:
    """Raise when the candidate's unscored share is above `judge.max_unscored_rate` (files already written)."""
    rate = metrics["unscored_rate"]
    if rate > config.max_unscored_rate:
        raise JudgeReliabilityError(
            f"judge {model}: {rate:.1%} of verdicts unscored ({metrics['unscored']}/{metrics['judgments']}), above "
            f"judge.max_unscored_rate {config.max_unscored_rate:.1%}; see the raw answers in {judgments_file}"
        )


def is_contender(entry: Mapping[str, Any], max_unscored_rate: float) -> bool:
    """Whether a leaderboard entry may be ranked or registered: it has a score and few enough unscored verdicts."""
    return entry.get("overall") is not None and float(entry.get("unscored_rate") or 0.0) <= max_unscored_rate
