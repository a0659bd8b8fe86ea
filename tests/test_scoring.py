"""Scoring arithmetic on hand-made judgments: means, groups, repeats, bootstrap CIs, win/tie/loss."""

from __future__ import annotations

import numpy as np
import pytest

from bench_samples import judgment, official_rows
from janus_align.bench.schema import bench_item
from janus_align.evaluate import scoring
from janus_align.evaluate.responses import Response

_j = judgment


@pytest.fixture
def items():
    # bench-0 AlpacaEval, bench-1 FLASK, bench-2 Koala; rubrics follow style, background, info, harm.
    return [bench_item(row, f"row {i}", i) for i, row in enumerate(official_rows(3))]


def test_item_score_is_the_mean_of_its_rubric_scores_and_model_score_the_mean_of_items():
    judgments = [_j("a", 0, 5), _j("a", 1, 3), _j("a", 2, 4), _j("a", 3, 4), _j("b", 0, 1), _j("b", 1, 2)]
    assert scoring.item_scores(judgments) == {"a": 4.0, "b": 1.5}
    assert scoring.overall(scoring.item_scores(judgments)) == pytest.approx(2.75)


def test_unscored_verdicts_are_left_out_and_counted_never_zero():
    judgments = [_j("a", 0, 4), _j("a", 1, None), _j("b", 0, None), _j("b", 1, None)]
    scores = scoring.item_scores(judgments)
    assert scores == {"a": 4.0, "b": None}
    assert scoring.overall(scores) == 4.0
    counts = scoring.unscored_counts(judgments)
    assert counts["unscored"] == 3 and counts["judgments"] == 4 and counts["unscored_rate"] == 0.75


def test_repeats_are_averaged_per_rubric_and_their_spread_reported():
    judgments = [
        _j("a", 0, 4, 0),
        _j("a", 0, 2, 1),
        _j("a", 0, 3, 2),
        _j("b", 0, 5, 0),
        _j("b", 0, 5, 1),
        _j("b", 0, None, 2),
    ]
    assert scoring.rubric_scores(judgments) == {("a", 0): 3.0, ("b", 0): 5.0}
    per_repeat = scoring.repeat_overalls(judgments)
    assert per_repeat == {0: 4.5, 1: 3.5, 2: 3.0}
    assert scoring.spread(per_repeat.values()) == pytest.approx(np.std([4.5, 3.5, 3.0], ddof=1))
    assert scoring.spread([4.0]) == 0.0 and scoring.spread([None]) is None


def test_per_source_and_per_dimension_group_the_right_scores(items):
    a, b, c = (item.id for item in items)
    judgments = [
        _j(a, 0, 5),
        _j(a, 1, 3),
        _j(a, 2, 4),
        _j(a, 3, 4),  # AlpacaEval item: 4.0
        _j(b, 0, 1),
        _j(b, 1, 1),
        _j(b, 2, 2),
        _j(b, 3, 2),  # FLASK item: 1.5
        _j(c, 0, None),
        _j(c, 1, None),
        _j(c, 2, None),
        _j(c, 3, None),  # Koala: unscored
    ]
    scores = scoring.item_scores(judgments)
    assert scoring.per_source(scores, items) == {"AlpacaEval": 4.0, "FLASK": 1.5, "Koala": None}
    assert scoring.per_dimension(judgments, items) == {
        "style": 3.0,
        "background_knowledge": 2.0,
        "informativeness": 3.0,
        "harmlessness": 3.0,
    }
    summary = scoring.summarize(
        judgments, items, {a: Response(a, "12345"), b: Response(b, "123"), c: Response(c, "", "boom")}
    )
    assert summary["overall"] == pytest.approx(2.75) and summary["scored_items"] == 2
    assert summary["mean_response_length"] == 4.0  # the failed generation is not a 0-length answer


@pytest.mark.parametrize(
    ("source", "group"),
    [
        ("self-instruct", "Self-Instruct"),
        ("mt_bench", "MT-Bench"),
        ("alpacaeval", "AlpacaEval"),
        ("Alpha-nlg (art)", "Alpha-nlg (art)"),
    ],
)
def test_fine_grained_official_sources_map_onto_the_five_groups_when_they_name_one(source, group):
    assert scoring.source_group(source) == group


def test_bootstrap_ci_is_the_percentile_interval_of_resampled_means():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 4.0, 3.5]
    low, high = scoring.bootstrap_ci(values, samples=2000, confidence=0.95, seed=3)
    # The same computation by hand: resample indices, take means, take the 2.5/97.5 percentiles.
    rng = np.random.default_rng(3)
    means = np.asarray(values)[rng.integers(0, len(values), size=(2000, len(values)))].mean(axis=1)
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert low < np.mean(values) < high
    assert scoring.bootstrap_ci(values, 2000, 0.95, seed=3) == (low, high)  # seeded: reproducible
    narrower = scoring.bootstrap_ci(values, 2000, 0.5, seed=3)
    assert low < narrower[0] < narrower[1] < high


def test_bootstrap_ci_of_constant_scores_is_a_point_and_of_nothing_is_none():
    assert scoring.bootstrap_ci([3.0, 3.0, 3.0], 100, 0.95, 0) == (3.0, 3.0)
    assert scoring.bootstrap_ci([], 100, 0.95, 0) == (None, None)


def test_win_tie_loss_counts_items_both_models_scored_with_ties_within_the_margin():
    a = {"1": 4.0, "2": 3.0, "3": 2.0, "4": 3.25, "5": None, "6": 5.0}
    b = {"1": 3.0, "2": 3.0, "3": 2.5, "4": 3.0, "5": 4.0}  # "6" missing in b, "5" unscored in a
    exact = scoring.win_tie_loss(a, b, margin=0.0)
    assert (exact["win"], exact["tie"], exact["loss"], exact["n"]) == (2, 1, 1, 4)
    assert exact["win_rate"] == pytest.approx((2 + 0.5) / 4)
    loose = scoring.win_tie_loss(a, b, margin=0.25)
    assert (loose["win"], loose["tie"], loose["loss"]) == (1, 2, 1)
    mirrored = scoring.win_tie_loss(b, a, margin=0.25)
    assert (mirrored["win"], mirrored["tie"], mirrored["loss"]) == (1, 2, 1)


def test_cluster_bootstrap_draws_whole_items_and_takes_the_pooled_mean():
    clusters = [[5.0, 5.0, 4.0], [1.0], [3.0, 2.0], []]  # the empty (unscored) item is left out
    low, high = scoring.cluster_bootstrap_ci(clusters, samples=1000, confidence=0.9, seed=5)
    rng = np.random.default_rng(5)
    draws = rng.integers(0, 3, size=(1000, 3))
    sums, counts = np.array([14.0, 1.0, 5.0]), np.array([3.0, 1.0, 2.0])
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))
    assert scoring.cluster_bootstrap_ci([[], []], 10, 0.9, 0) == (None, None)
