"""Stage `arena_hard --model NAME`: Arena-Hard-Auto, Bradley-Terry scores against a baseline, with style control.

Reads the questions at data/arena_hard/question.jsonl (or `evals.arena_hard.questions`: a file,
or a dataset id, evaluate/hub_sets.py) and the baseline's answers at
data/arena_hard/model_answer/<evals.arena_hard.baseline>.jsonl (the official v0.1 formats; the
bundled files are a handful of our own questions and answers, the full 500 questions and
gpt-4-0314's answers are the user's files put there). The model answers the first turn of every
question (`generate.sampling`), its answers are written in the official answer format
(artifacts/eval/arena_hard/model_answer/<model>.jsonl), and the judge compares them with the
baseline's in BOTH orders (`pairwise_judge.GRADED`: `[[A>>B]]` .. `[[B>>A]]`).

metrics/arena_hard/<model>.json: `score` (the Bradley-Terry win rate against the baseline,
percent, as Arena-Hard-Auto reports it; Elo with the baseline at 1000 beside it) and, with
`evals.arena_hard.style_control`, `style_controlled` (length, headers, lists and bold as
covariates), each with a bootstrap interval over questions; position consistency; unscored
games. One model per stage: every battle is against the baseline, so the model's strength is
its own; style coefficients are fitted per model here, not jointly over all models as the
official leaderboard does.
"""

from __future__ import annotations

from typing import Any

from janus_align import paths
from janus_align.config import Params
from janus_align.evaluate import hub_sets
from janus_align.evaluate import pairwise_scores as ps
from janus_align.evaluate.pairwise_judge import (
    GRADED,
    TEMPLATE_VERSION,
    Game,
    PairTask,
    judge_games,
    position_consistency,
    unscored,
)
from janus_align.evaluate.pairwise_sets import load_arena_hard_questions, require_answers, write_arena_hard_answers
from janus_align.records import write_json, write_jsonl

Styles = dict[str, tuple[dict[str, float], dict[str, float]]]


def arena_metrics(
    games: list[Game], styles: Styles | None, samples: int, confidence: float, seed: int
) -> dict[str, Any]:
    """Bradley-Terry score (and style-controlled score when `styles`), intervals, position consistency."""

    def score(drawn: Any, style: Styles | None = None) -> float | None:
        fit = ps.bradley_terry(drawn, style)
        return fit["score"] if fit else None

    metrics: dict[str, Any] = {}
    plain = ps.bradley_terry(games)
    metrics["score"] = plain["score"] if plain else None
    metrics["elo"] = plain["elo"] if plain else None
    metrics["score_ci"] = ps.interval(ps.bootstrap(games, score, samples, confidence, seed))
    if styles is not None:
        controlled = ps.bradley_terry(games, styles)
        metrics["style_controlled"] = controlled
        metrics["style_controlled_ci"] = ps.interval(
            ps.bootstrap(games, lambda drawn: score(drawn, styles), samples, confidence, seed)
        )
    metrics["win_rate"] = ps.win_rate(games)
    metrics["position_consistency"] = position_consistency(games)
    return {**metrics, **unscored(games)}


def run(params: Params, model: str) -> dict[str, Any]:
    import mlflow

    from janus_align import tracking
    from janus_align.evaluate.generate import answer_instructions
    from janus_align.evaluate.judging import open_judge

    settings = params.evals.arena_hard
    source = hub_sets.resolve(
        settings.questions,
        paths.ARENA_HARD_QUESTIONS,
        paths.ARENA_HARD_DIR,
        "question.jsonl",
        "evals.arena_hard.questions",
    )
    questions = load_arena_hard_questions(source)
    baseline = require_answers(paths.arena_hard_baseline(settings.baseline), questions)
    prompts = [question.turns[0].content for question in questions]
    results, model_id = answer_instructions(params, model, prompts, None, "arena_hard")
    outputs = [result.text if result.ok else "" for result in results]
    tokens = [result.completion_tokens for result in results]
    write_arena_hard_answers(paths.arena_hard_answers(model), questions, outputs, tokens, model)
    tasks = [
        PairTask(
            id=question.question_id,
            instruction=prompt,
            candidate=model,
            opponent=settings.baseline,
            candidate_answer=output if result.ok else None,
            opponent_answer=baseline[question.question_id].text,
        )
        for question, prompt, output, result in zip(questions, prompts, outputs, results)
    ]
    with open_judge(params.judge) as engine:
        games = judge_games(engine, tasks, GRADED, params.judge, params.seed, "both")
        judge_model = engine.model_id
    write_jsonl(paths.arena_hard_games(model), games)
    styles: Styles | None = None
    if settings.style_control:
        styles = {
            task.id: (ps.style_features(task.candidate_answer or ""), ps.style_features(task.opponent_answer or ""))
            for task in tasks
        }
    report = params.report
    metrics = {
        "model": model,
        "model_id": model_id,
        "baseline": settings.baseline,
        "questions": len(questions),
        **arena_metrics(games, styles, report.bootstrap_samples, report.confidence, params.seed),
        "judge_model": judge_model,
        "template_version": TEMPLATE_VERSION,
    }
    write_json(paths.arena_hard_metrics(model), metrics)
    shown = "n/a" if metrics["score"] is None else f"{metrics['score']:.1f}"
    print(f"arena_hard {model}: score {shown} against {settings.baseline} -> {paths.arena_hard_metrics(model)}")
    mlflow.set_tags({"candidate": model, "judge_model": judge_model, "judge_template": TEMPLATE_VERSION})
    mlflow.log_metrics(tracking.metrics(metrics))
    for path in (paths.arena_hard_answers(model), paths.arena_hard_games(model), paths.arena_hard_metrics(model)):
        mlflow.log_artifact(str(path), artifact_path="arena_hard")
    return metrics
