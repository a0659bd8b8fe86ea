"""Stage `pairwise`: the paper's Fig. 3, two candidates compared on the Multifaceted Bench.

For each `[candidate, opponent]` of `evals.pairwise.pairs`, the judge (`judge.llm`) reads each
bench prompt (with its system message when `evals.pairwise.show_system`: it states the
preferences that make an answer good), the reference answer and both answers, in both orders,
and writes one of Fig. 3's four outcomes: `[[A>B]]`, `[[B>A]]`, `[[BOTH GOOD]]`, `[[BOTH BAD]]`
(`pairwise_judge.OUTCOMES`). The paper's human annotators gave one of: Janus win / both good /
both bad / opponent win; here every game (each order) counts once, so the shares pool both
orders, and `position_consistency` says how often the two orders of an item agree.

Writes artifacts/eval/pairwise/<candidate>_vs_<opponent>.jsonl (one `Game` per item and order)
and metrics/pairwise.json: per pair the shares (percent) of `win`, `both_good`, `both_bad`,
`loss`, `tie_plus_win` (win + both good, the abstract's number) with bootstrap intervals, the
position consistency, `per_item` (items counted once: the outcome both orders agree on, or
`inconsistent`) and the unscored games. `judge.repeats` does not apply: the two orders are the
two verdicts per item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from janus_align import paths
from janus_align.bench.schema import BenchItem, load_bench
from janus_align.config import Params
from janus_align.evaluate import pairwise_scores as ps
from janus_align.evaluate.judge_prompt import judge_instruction
from janus_align.evaluate.pairwise_judge import (
    OUTCOMES,
    TEMPLATE_VERSION,
    Game,
    PairTask,
    judge_games,
    position_consistency,
    unscored,
)
from janus_align.evaluate.responses import Response, load_candidate_responses
from janus_align.records import write_json, write_jsonl

# Fig. 3's names for the four outcome labels, from the candidate's side.
OUTCOME_NAMES = {"A>B": "win", "BOTH GOOD": "both_good", "BOTH BAD": "both_bad", "B>A": "loss"}


def pair_name(candidate: str, opponent: str) -> str:
    return f"{candidate}_vs_{opponent}"


def pair_tasks(
    items: Sequence[BenchItem],
    candidate: str,
    opponent: str,
    responses: Mapping[str, Mapping[str, Response]],
    show_system: bool,
) -> list[PairTask]:
    """One task per bench item; a failed or missing answer leaves that side None (the games say why)."""

    def usable(model: str, item_id: str) -> str | None:
        found = responses[model].get(item_id)
        return found.response if found is not None and found.error is None else None

    return [
        PairTask(
            id=item.id,
            instruction=judge_instruction(item, show_system),
            candidate=candidate,
            opponent=opponent,
            candidate_answer=usable(candidate, item.id),
            opponent_answer=usable(opponent, item.id),
            reference=item.reference_answer or None,
        )
        for item in items
    ]


def fig3_metrics(games: Sequence[Game], samples: int, confidence: float, seed: int) -> dict[str, Any]:
    """The four outcomes' shares (percent of scored games) with bootstrap intervals, and position consistency."""
    shares = ps.outcome_shares(games, list(OUTCOME_NAMES))
    metrics: dict[str, Any] = {}
    for label, name in OUTCOME_NAMES.items():
        metrics[name] = shares[label]
        share = lambda drawn, label=label: ps.outcome_shares(drawn, [label])[label]  # noqa: E731
        metrics[f"{name}_ci"] = ps.interval(ps.bootstrap(games, share, samples, confidence, seed))
    metrics["tie_plus_win"] = None if shares["A>B"] is None else shares["A>B"] + (shares["BOTH GOOD"] or 0.0)
    metrics["position_consistency"] = position_consistency(games)
    metrics["per_item"] = item_outcomes(games)
    return {**metrics, **unscored(games)}


def item_outcomes(games: Sequence[Game]) -> dict[str, int]:
    """Items counted once, as an annotator gives one outcome per pair: the outcome both orders
    agree on, else `inconsistent` (items with an unscored order are left out)."""
    by_item: dict[str, list[str | None]] = {}
    for game in games:
        by_item.setdefault(game.id, []).append(game.outcome)
    counts = dict.fromkeys([*OUTCOME_NAMES.values(), "inconsistent"], 0)
    for outcomes in by_item.values():
        if len(outcomes) == 2 and None not in outcomes:
            counts[OUTCOME_NAMES[outcomes[0] or ""] if outcomes[0] == outcomes[1] else "inconsistent"] += 1
    return counts


def run(params: Params) -> dict[str, Any]:
    import mlflow

    from janus_align import tracking
    from janus_align.evaluate.judging import open_judge

    pairs = params.evals.pairwise.pairs
    if not pairs:
        print("pairwise: evals.pairwise.pairs is empty; nothing compared")
    models = list(dict.fromkeys(name for pair in pairs for name in pair))
    responses = load_candidate_responses(models, "pairwise")
    items = load_bench(paths.BENCH_FILE)
    tasks = {pair_name(a, b): pair_tasks(items, a, b, responses, params.evals.pairwise.show_system) for a, b in pairs}
    games: list[Game] = []
    results: dict[str, Any] = {"protocol": OUTCOMES.name, "template_version": TEMPLATE_VERSION, "pairs": {}}
    if tasks:
        with open_judge(params.judge) as engine:
            # One engine call for every pair: the engine batches all games together.
            games = judge_games(
                engine, [t for group in tasks.values() for t in group], OUTCOMES, params.judge, params.seed, "both"
            )
            results["judge_model"] = engine.model_id
    report = params.report
    for name in tasks:
        mine = [g for g in games if pair_name(g.candidate, g.opponent) == name]
        write_jsonl(paths.pairwise_file(name), mine)
        metrics = fig3_metrics(mine, report.bootstrap_samples, report.confidence, params.seed)
        results["pairs"][name] = metrics
        consistency = metrics["position_consistency"]["rate"]
        print(
            f"pairwise {name}: win {_pct(metrics['win'])} / both good {_pct(metrics['both_good'])} / "
            f"both bad {_pct(metrics['both_bad'])} / loss {_pct(metrics['loss'])} over {metrics['games']} games "
            f"({metrics['unscored']} unscored); position consistency {_pct(None if consistency is None else 100 * consistency)}"
        )
        mlflow.log_metrics(tracking.metrics(metrics, f"{name}."))
    write_json(paths.PAIRWISE_METRICS, results)
    for path in [paths.PAIRWISE_METRICS, *(paths.pairwise_file(name) for name in tasks)]:
        mlflow.log_artifact(str(path), artifact_path="pairwise")
    mlflow.set_tags({"judge_template": TEMPLATE_VERSION, "pairs": ",".join(tasks)})
    return results


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"
