"""Stage `alpaca_eval --model NAME`: AlpacaEval 2.0, raw and length-controlled win rates against the reference.

Reads the evaluation set at data/alpaca_eval/alpaca_eval.json, or `evals.alpaca_eval.eval_set`
(a file, or a dataset id: evaluate/hub_sets.py) (the official format: a list of
`{instruction, output, generator, dataset}`, `output` being the reference model's answer; the
bundled file is a handful of our own items, the full 805 are the user's file put there). The
model answers every instruction (`evals.alpaca_eval.system` as its system message, if set;
`generate.sampling`), its outputs are written as `alpaca_eval` reads them
(artifacts/eval/alpaca_eval/<model>_outputs.json), and the judge (`judge.llm`) compares each
output with the reference in ONE order, drawn per instruction from the seed and recorded in the
game (`pairwise_judge.PREFERENCE`: `[[A>B]]`, `[[A=B]]`, `[[B>A]]`).

metrics/alpaca_eval/<model>.json: `win_rate` (percent, a tie half) and `lc_win_rate` (the
minimal length-controlled GLM, `pairwise_scores.length_controlled`), each with a bootstrap
interval over instructions, the GLM's length coefficient, mean lengths, the share shown first,
unscored games. Official AlpacaEval 2.0 uses GPT-4-Turbo both as reference and as judge, and
the judge's token probabilities rather than a label: our numbers compare with the paper's only
when the same reference outputs and a comparable judge are used.
"""

from __future__ import annotations

from typing import Any

from janus_align import paths
from janus_align.config import Params
from janus_align.evaluate import hub_sets
from janus_align.evaluate import pairwise_scores as ps
from janus_align.evaluate.pairwise_judge import PREFERENCE, TEMPLATE_VERSION, Game, PairTask, judge_games, unscored
from janus_align.evaluate.pairwise_sets import load_alpaca_eval, write_alpaca_outputs
from janus_align.records import write_json, write_jsonl


def alpaca_metrics(games: list[Game], samples: int, confidence: float, seed: int) -> dict[str, Any]:
    """Raw and length-controlled win rates with their intervals, and what they rest on."""
    kept = ps.scored(games)
    fit = ps.length_fit(games)
    return {
        "win_rate": ps.win_rate(games),
        "win_rate_ci": ps.interval(ps.bootstrap(games, ps.win_rate, samples, confidence, seed)),
        "lc_win_rate": ps.length_controlled(games),
        "lc_win_rate_ci": ps.interval(ps.bootstrap(games, ps.length_controlled, samples, confidence, seed)),
        "length_coefficient": fit[1] if fit else None,
        "mean_output_chars": sum(g.candidate_chars for g in kept) / len(kept) if kept else None,
        "mean_reference_chars": sum(g.opponent_chars for g in kept) / len(kept) if kept else None,
        "shown_first_share": sum(g.order == "candidate_first" for g in games) / len(games) if games else None,
        **unscored(games),
    }


def run(params: Params, model: str) -> dict[str, Any]:
    import mlflow

    from janus_align import tracking
    from janus_align.evaluate.generate import answer_instructions
    from janus_align.evaluate.judging import open_judge

    source = hub_sets.resolve(
        params.evals.alpaca_eval.eval_set,
        paths.ALPACA_EVAL_SET,
        paths.ALPACA_EVAL_DIR,
        "alpaca_eval.json",
        "evals.alpaca_eval.eval_set",
    )
    eval_set = load_alpaca_eval(source)
    system = params.evals.alpaca_eval.system
    results, model_id = answer_instructions(params, model, [row.instruction for row in eval_set], system, "alpaca_eval")
    outputs = [result.text if result.ok else "" for result in results]
    write_alpaca_outputs(paths.alpaca_eval_outputs(model), eval_set, outputs, model)
    tasks = [
        PairTask(
            id=str(index),
            instruction=row.instruction,
            candidate=model,
            opponent=row.generator,
            candidate_answer=output if result.ok else None,
            opponent_answer=row.output,
        )
        for index, (row, output, result) in enumerate(zip(eval_set, outputs, results))
    ]
    with open_judge(params.judge) as engine:
        games = judge_games(engine, tasks, PREFERENCE, params.judge, params.seed, "random")
        judge_model = engine.model_id
    write_jsonl(paths.alpaca_eval_games(model), games)
    report = params.report
    metrics = {
        "model": model,
        "model_id": model_id,
        "reference": sorted({row.generator for row in eval_set}),
        "items": len(eval_set),
        **alpaca_metrics(games, report.bootstrap_samples, report.confidence, params.seed),
        "judge_model": judge_model,
        "template_version": TEMPLATE_VERSION,
    }
    write_json(paths.alpaca_eval_metrics(model), metrics)
    print(
        f"alpaca_eval {model}: LC win rate {_fmt(metrics['lc_win_rate'])}, win rate {_fmt(metrics['win_rate'])} "
        f"over {metrics['games'] - metrics['unscored']}/{metrics['items']} instructions -> {paths.alpaca_eval_metrics(model)}"
    )
    mlflow.set_tags({"candidate": model, "judge_model": judge_model, "judge_template": TEMPLATE_VERSION})
    mlflow.log_metrics(tracking.metrics(metrics))
    for path in (paths.alpaca_eval_outputs(model), paths.alpaca_eval_games(model), paths.alpaca_eval_metrics(model)):
        mlflow.log_artifact(str(path), artifact_path="alpaca_eval")
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"
