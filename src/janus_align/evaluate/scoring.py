"""Scores from judgments: pure arithmetic, shared by the judge stage, `janus evaluate` and the report.

A judgment is one judge verdict: one item, one rubric, one repeat (`verdict` 1..5, or None when
unscored). The aggregation follows the paper (PAPER.md section 4):
- a rubric's score is the mean of its scored repeats;
- an item's score is the mean of its scored rubrics;
- a model's score is the mean of its scored items; per source group and per dimension likewise.
Unscored verdicts are left out of every mean and counted, never treated as 0.

    >>> rows = [{"id": "a", "rubric_index": 0, "repeat": 0, "verdict": 4},
    ...         {"id": "a", "rubric_index": 1, "repeat": 0, "verdict": 2}]
    >>> item_scores(rows)
    {'a': 3.0}
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from janus_align.bench.schema import BenchItem
from janus_align.evaluate.responses import Response
from janus_align.inputs import BENCH_GROUPS, DIMENSIONS

Judgment = Mapping[str, Any]


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _canonical(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_GROUPS = {_canonical(group): group for group in BENCH_GROUPS}


def source_group(source: str) -> str:
    """The benchmark a bench source belongs to (`self-instruct` -> `Self-Instruct`).

    The official bench has 123 fine-grained sources (e.g. FLASK's sub-tasks); a source that
    names none of the five groups is kept as it is.
    """
    return _GROUPS.get(_canonical(source), source)


def rubric_scores(judgments: Iterable[Judgment]) -> dict[tuple[str, int], float | None]:
    """{(item id, rubric index): mean over scored repeats, or None when no repeat was scored}."""
    verdicts: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in judgments:
        key = (str(row["id"]), int(row["rubric_index"]))
        verdicts.setdefault(key, [])
        if row.get("verdict") is not None:
            verdicts[key].append(float(row["verdict"]))
    return {key: _mean(values) for key, values in verdicts.items()}


def item_scores(judgments: Iterable[Judgment]) -> dict[str, float | None]:
    """{item id: mean of its scored rubric scores, or None when none was scored}."""
    per_item: dict[str, list[float]] = defaultdict(list)
    for (item_id, _), score in rubric_scores(judgments).items():
        per_item.setdefault(item_id, [])
        if score is not None:
            per_item[item_id].append(score)
    return {item_id: _mean(values) for item_id, values in per_item.items()}


def overall(scores: Mapping[str, float | None]) -> float | None:
    """Mean over the scored items."""
    return _mean([s for s in scores.values() if s is not None])


def per_source(scores: Mapping[str, float | None], items: Sequence[BenchItem]) -> dict[str, float | None]:
    """Mean item score within each source group, groups in the paper's column order."""
    groups: dict[str, list[float]] = defaultdict(list)
    for item in items:
        score = scores.get(item.id)
        group = source_group(item.source)
        groups.setdefault(group, [])
        if score is not None:
            groups[group].append(score)
    order = {group: i for i, group in enumerate(BENCH_GROUPS)}
    return {g: _mean(groups[g]) for g in sorted(groups, key=lambda g: (order.get(g, len(order)), g))}


def per_dimension(judgments: Iterable[Judgment], items: Sequence[BenchItem]) -> dict[str, float | None]:
    """Mean rubric score per preference dimension (a rubric checks one dimension's preference)."""
    by_id = {item.id: item for item in items}
    groups: dict[str, list[float]] = defaultdict(list)
    for (item_id, index), score in rubric_scores(judgments).items():
        item = by_id.get(item_id)
        dimension = item.dimension_of(index) if item is not None else "unknown"
        groups.setdefault(dimension, [])
        if score is not None:
            groups[dimension].append(score)
    order = {dimension: i for i, dimension in enumerate(DIMENSIONS)}
    return {d: _mean(groups[d]) for d in sorted(groups, key=lambda d: (order.get(d, len(order)), d))}


def repeat_overalls(judgments: Sequence[Judgment]) -> dict[int, float | None]:
    """The model score each independent judge run alone gives: {repeat: overall}."""
    repeats = sorted({int(row["repeat"]) for row in judgments})
    return {r: overall(item_scores(row for row in judgments if int(row["repeat"]) == r)) for r in repeats}


def spread(values: Iterable[float | None]) -> float | None:
    """Sample standard deviation (ddof 1) of the scored values; 0.0 for a single one."""
    scored = [v for v in values if v is not None]
    if not scored:
        return None
    return float(np.std(scored, ddof=1)) if len(scored) > 1 else 0.0


def bootstrap_ci(
    values: Sequence[float], samples: int, confidence: float, seed: int
) -> tuple[float | None, float | None]:
    """Percentile bootstrap confidence interval of the mean.

    Resamples `values` with replacement `samples` times (numpy, seeded) and returns the
    (1-confidence)/2 and (1+confidence)/2 quantiles of the resampled means.
    """
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def win_tie_loss(
    scores_a: Mapping[str, float | None], scores_b: Mapping[str, float | None], margin: float
) -> dict[str, float | int]:
    """Compare two models item by item on the items both have a score for.

    A difference within `margin` (inclusive) is a tie. `win_rate` counts ties as half a win.
    """
    win = tie = loss = 0
    for item_id, a in scores_a.items():
        b = scores_b.get(item_id)
        if a is None or b is None:
            continue
        difference = a - b
        if abs(difference) <= margin + 1e-12:
            tie += 1
        elif difference > 0:
            win += 1
        else:
            loss += 1
    total = win + tie + loss
    return {
        "win": win,
        "tie": tie,
        "loss": loss,
        "n": total,
        "win_rate": (win + 0.5 * tie) / total if total else math.nan,
    }


def unscored_counts(judgments: Sequence[Judgment]) -> dict[str, float | int]:
    """How many verdicts are missing, and how many of those were failed judge calls."""
    total = len(judgments)
    unscored = sum(1 for row in judgments if row.get("verdict") is None)
    failed = sum(1 for row in judgments if row.get("verdict") is None and row.get("call_failed"))
    return {
        "judgments": total,
        "unscored": unscored,
        "unscored_rate": unscored / total if total else 0.0,
        "failed_calls": failed,
    }


def mean_response_length(responses: Mapping[str, Response], ids: Iterable[str]) -> float | None:
    """Mean length in characters of the responses to these items (failed generations left out)."""
    lengths = [len(responses[i].response) for i in ids if i in responses and responses[i].error is None]
    return _mean(lengths)


def summarize(
    judgments: Sequence[Judgment], items: Sequence[BenchItem], responses: Mapping[str, Response]
) -> dict[str, Any]:
    """Every score of one model: what metrics/eval/<model>.json holds."""
    scores = item_scores(judgments)
    repeats = repeat_overalls(judgments)
    return {
        "items": len(items),
        "scored_items": sum(1 for s in scores.values() if s is not None),
        "overall": overall(scores),
        "overall_std_over_repeats": spread(repeats.values()),
        "overall_per_repeat": {str(r): v for r, v in repeats.items()},
        "per_source": per_source(scores, items),
        "per_dimension": per_dimension(judgments, items),
        **unscored_counts(judgments),
        "mean_response_length": mean_response_length(responses, [item.id for item in items]),
    }


def numeric_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested metrics dict, flattened (`per_source.FLASK`) for mlflow.log_metrics.

    Strings, None and NaN are left out; names keep only the characters MLflow accepts.
    """
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = re.sub(r"[^A-Za-z0-9_\-./ ]", "_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            flat.update(numeric_metrics(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            flat[name] = float(value)
    return flat
