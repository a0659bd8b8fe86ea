"""The bench score of a checkpoint that is not a pipeline candidate (an Optuna trial's model).

The same protocol as the generate and judge stages (their request builders, engines, seeds,
judge prompts and scoring), run in process and writing no files: the overall mean over items,
each item the mean of its rubric scores, unscored verdicts left out.
"""

from __future__ import annotations

from pathlib import Path

from janus_align import paths
from janus_align.bench.schema import load_bench
from janus_align.config import Params
from janus_align.evaluate import scoring
from janus_align.evaluate.generate import answer, generation_requests, local_config
from janus_align.evaluate.judging import judge_candidates, open_judge
from janus_align.evaluate.responses import Response


def bench_score(params: Params, checkpoint: Path, label: str) -> float | None:
    """Generate with `checkpoint` on every bench prompt, judge it; the overall score (None: nothing scored)."""
    items = load_bench(paths.BENCH_FILE)
    results, _, _ = answer(params, local_config(params, label), str(checkpoint), generation_requests(items, params, 1))
    responses = {
        item.id: Response(item.id, result.text if result.ok else "", result.error)
        for item, result in zip(items, results)
    }
    with open_judge(params.judge) as engine:
        judgments = judge_candidates(engine, items, {label: responses}, params.judge, params.seed)[label]
    return scoring.overall(scoring.item_scores(judgments))
