"""The official outputs: `<model>_evaluation.json` as the paper's scripts write it, and the
`<model>_responses.json` they read (`official_responses`).

{id: {id, bench row..., response, feedback: [...], score: [...]}} with one `feedback` and one
`score` per rubric (PAPER.md section 7); `score_per_repeat` is ours and keeps every judge run.
Each record keeps its `id`, as the official scripts' records do (they copy the bench row), so a
record read on its own, or the file turned into a list, still says which item it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from janus_align.bench.schema import BenchItem
from janus_align.evaluate import scoring
from janus_align.evaluate.responses import Response
from janus_align.evaluate.rows import Judgment


def official_evaluation(
    items: Sequence[BenchItem], responses: Mapping[str, Response], judgments: Sequence[Judgment]
) -> dict[str, dict[str, Any]]:
    """The official evaluation JSON: {id: {id, bench row..., response, feedback: [...], score: [...]}}.

    `score[i]` is rubric i's mean over the scored repeats (None when unscored), `feedback[i]`
    the feedback of its first scored repeat; `score_per_repeat` keeps every run.
    """
    by_key: dict[tuple[str, int], list[Judgment]] = {}
    for row in judgments:
        by_key.setdefault((row.id, row.rubric_index), []).append(row)
    means = scoring.rubric_scores(judgments)
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        feedback: list[str | None] = []
        score: list[float | int | None] = []
        per_repeat: list[list[int | None]] = []
        for index in range(len(item.rubrics)):
            rows = sorted(by_key.get((item.id, index), []), key=lambda r: r.repeat)
            scored = [r for r in rows if r.verdict is not None]
            feedback.append(scored[0].feedback if scored else None)
            mean = means.get((item.id, index))
            score.append(int(mean) if mean is not None and float(mean).is_integer() else mean)
            per_repeat.append([r.verdict for r in rows])
        response = responses.get(item.id)
        out[item.id] = {
            **item.official_row(),
            "response": response.response if response and response.error is None else None,
            "feedback": feedback,
            "score": score,
            "score_per_repeat": per_repeat,
        }
    return out


def official_responses(items: Sequence[BenchItem], responses: Mapping[str, Response]) -> dict[str, dict[str, Any]]:
    """The official responses JSON `run_eval_openai.py` reads: {bench id: {"response": text}}.

    A failed or missing generation is `None`, as the official inference scripts store a failed
    request (our loader reads that back as an unjudged answer).
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        response = responses.get(item.id)
        out[item.id] = {"response": response.response if response and response.error is None else None}
    return out
