"""Scores from judgments: pure arithmetic, shared by the judge stage, `janus evaluate` and the report.

A judgment is one judge verdict: one item, one rubric, one repeat (`verdict` 1..5, or None when
unscored). The aggregation follows the paper (PAPER.md section 4):
- a rubric's score is the mean of its scored repeats;
- an item's score is the mean of its scored rubrics;
- a model's score is the mean of its scored items; per source group and per dimension likewise.
Unscored verdicts are left out of every mean and counted, never treated as 0.

Groups (`source_groups`, `dimension_groups`) are written once here and hold each item's scores
together: {group: {item id: [scores]}}. The group means and the report's confidence intervals
both read them, and the intervals resample whole items (`cluster_bootstrap_ci`), so an item's
correlated rubric scores move together as they do when another bench is drawn.
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
from janus_align.evaluate.rows import Judgment
from janus_align.inputs import BENCH_GROUPS, DIMENSIONS

Groups = dict[str, dict[str, list[float]]]
"""{group: {item id: that item's scored values in the group}}: the clusters a bootstrap resamples."""


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
        key = (row.id, row.rubric_index)
        verdicts.setdefault(key, [])
        if row.verdict is not None:
            verdicts[key].append(float(row.verdict))
    return {key: _mean(values) for key, values in verdicts.items()}


def item_scores(judgments: Iterable[Judgment]) -> dict[str, float | None]:
    """{item id: mean of its scored rubric scores, or None when none was scored}.

    >>> from janus_align.evaluate.rows import Judgment
    >>> row = dict(source="FLASK", model="m", dimension="style", repeat=0, feedback="", raw="", error=None,
    ...            call_failed=False, attempts=1, seed=0, judge_model="j", prompt_hash="h", template_version="t")
    >>> item_scores([Judgment(id="a", rubric_index=0, verdict=4, **row), Judgment(id="a", rubric_index=1, verdict=2, **row)])
    {'a': 3.0}
    """
    per_item: dict[str, list[float]] = defaultdict(list)
    for (item_id, _), score in rubric_scores(judgments).items():
        per_item.setdefault(item_id, [])
        if score is not None:
            per_item[item_id].append(score)
    return {item_id: _mean(values) for item_id, values in per_item.items()}


def overall(scores: Mapping[str, float | None]) -> float | None:
    """Mean over the scored items."""
    return _mean([s for s in scores.values() if s is not None])


def _ordered(groups: Groups, order: Sequence[str]) -> Groups:
    """Groups in the paper's order (`order`), others after it alphabetically."""
    rank = {name: i for i, name in enumerate(order)}
    return {g: groups[g] for g in sorted(groups, key=lambda g: (rank.get(g, len(rank)), g))}


def source_groups(scores: Mapping[str, float | None], items: Sequence[BenchItem]) -> Groups:
    """{source group: {item id: [item score]}} (unscored items listed with no score), paper's column order."""
    groups: Groups = defaultdict(dict)
    for item in items:
        score = scores.get(item.id)
        groups[source_group(item.source)][item.id] = [] if score is None else [score]
    return _ordered(groups, BENCH_GROUPS)


def dimension_groups(judgments: Iterable[Judgment], items: Sequence[BenchItem]) -> Groups:
    """{dimension: {item id: its scored rubric scores in that dimension}}, in the taxonomy's order.

    A rubric checks one dimension's preference; an item may have several rubrics in one
    dimension (or all of them under `unknown`, when its preference set does not line up with its
    rubrics), and they stay together under the item.
    """
    by_id = {item.id: item for item in items}
    groups: Groups = defaultdict(dict)
    for (item_id, index), score in rubric_scores(judgments).items():
        item = by_id.get(item_id)
        dimension = item.dimension_of(index) if item is not None else "unknown"
        values = groups[dimension].setdefault(item_id, [])
        if score is not None:
            values.append(score)
    return _ordered(groups, DIMENSIONS)


def group_means(groups: Groups) -> dict[str, float | None]:
    """The mean of each group's scored values (None for a group with none)."""
    return {g: _mean([v for values in clusters.values() for v in values]) for g, clusters in groups.items()}


def per_source(scores: Mapping[str, float | None], items: Sequence[BenchItem]) -> dict[str, float | None]:
    """Mean item score within each source group, groups in the paper's column order."""
    return group_means(source_groups(scores, items))


def per_dimension(judgments: Iterable[Judgment], items: Sequence[BenchItem]) -> dict[str, float | None]:
    """Mean rubric score per preference dimension (a rubric checks one dimension's preference)."""
    return group_means(dimension_groups(judgments, items))


def repeat_overalls(judgments: Sequence[Judgment]) -> dict[int, float | None]:
    """The model score each independent judge run alone gives: {repeat: overall}."""
    repeats = sorted({row.repeat for row in judgments})
    return {r: overall(item_scores(row for row in judgments if row.repeat == r)) for r in repeats}


def spread(values: Iterable[float | None]) -> float | None:
    """Sample standard deviation (ddof 1) of the scored values; 0.0 for a single one."""
    scored = [v for v in values if v is not None]
    if not scored:
        return None
    return float(np.std(scored, ddof=1)) if len(scored) > 1 else 0.0


def cluster_bootstrap_ci(
    clusters: Iterable[Sequence[float]], samples: int, confidence: float, seed: int
) -> tuple[float | None, float | None]:
    """Percentile cluster-bootstrap confidence interval of the pooled mean.

    A cluster is one bench item's values (its rubric scores in a dimension, or its one item
    score). Each of `samples` resamples draws whole clusters with replacement (numpy, seeded) and
    takes the mean of all their values; the interval is the (1-confidence)/2 and
    (1+confidence)/2 quantiles of those means. Resampling rubrics one by one instead would treat
    an item's correlated rubrics as independent evidence and give too narrow an interval.
    Clusters without values (unscored items) are left out.
    """
    kept = [np.asarray(values, dtype=float) for values in clusters if len(values)]
    if not kept:
        return None, None
    sums = np.asarray([values.sum() for values in kept])
    counts = np.asarray([values.size for values in kept], dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(kept), size=(samples, len(kept)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float | None], samples: int, confidence: float, seed: int
) -> tuple[float | None, float | None]:
    """Percentile bootstrap confidence interval of the mean of independent values (one per item):
    `cluster_bootstrap_ci` with one value per cluster; None values are left out."""
    return cluster_bootstrap_ci([[v] for v in values if v is not None], samples, confidence, seed)


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
    unscored = sum(1 for row in judgments if row.verdict is None)
    failed = sum(1 for row in judgments if row.verdict is None and row.call_failed)
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
