"""The bench score of a checkpoint that is not a pipeline candidate (an Optuna trial's model).

The same protocol as the generate and judge stages (their request builders, seeds, judge
prompts and scoring), run in process and writing no files: the overall mean over items, each
item the mean of its rubric scores, unscored verdicts left out.
"""

from __future__ import annotations

from pathlib import Path

from janus_align.bench.schema import BENCH_FILE, load_bench
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.evaluate import scoring
from janus_align.evaluate.generate import generation_requests, local_config, resolve_prompt_format
from janus_align.evaluate.judge import judge_all, open_judge
from janus_align.evaluate.responses import Response
from janus_align.llm import open_engine


def bench_score(params: Params, checkpoint: Path, label: str) -> float | None:
    """Generate with `checkpoint` on every bench prompt, judge it; the overall score (None: nothing scored)."""
    if not BENCH_FILE.is_file():
        raise JanusError(f"{BENCH_FILE} does not exist: run the bench stage first (`janus bench`)")
    items = load_bench(BENCH_FILE)
    engine = open_engine(local_config(params, label), model=str(checkpoint), prompt_format=resolve_prompt_format(params))
    try:
        results = engine.complete(generation_requests(items, params, 1), desc=f"generate {label}")
    finally:
        engine.close()
    del engine  # one model in memory at a time: the judge loads next
    responses = {
        item.id: Response(item.id, result.text if result.ok else "", result.error)
        for item, result in zip(items, results)
    }
    judge = open_judge(params.judge)
    try:
        judgments = judge_all(judge, items, responses, params.judge, params.seed, label)
    finally:
        judge.close()
    return scoring.overall(scoring.item_scores(judgments))
