"""Stage `judge`: every candidate's answers graded, one judge call per rubric; its files and MLflow runs.

The parts live in their own modules: the prompt (`judge_prompt`), reading a verdict
(`verdicts`), the judging loop with its re-asks (`judging.judge_candidates`), the official output
(`official_evaluation`) and the arithmetic (`scoring`). This module is the stage around them.

All candidates (generate.candidates + generate.external, or those named with --model) are
judged by one judge engine in one `judge_candidates` call, so each attempt is one engine call
over every candidate's pending requests. DVC runs one judge stage per candidate
(`--model NAME`): on the 2-core CPU one big batch was measured slower (docs/decisions.md).

Before any candidate, the judge grades the calibration set and must reach
`judge.calibration.min_kappa`; after, a candidate whose unscored share is above
`judge.max_unscored_rate` fails the stage (its files written for the record); with
`judge.second` a second judge grades the same answers for agreement (`reliability`).

Writes, per candidate, artifacts/eval/judgments/<model>.jsonl (one `rows.Judgment` per
item x rubric x repeat: raw text, verdict, judge model id, prompt hash), the official
artifacts/eval/official/<model>_evaluation.json, the official
artifacts/eval/official/<model>_responses.json ({bench id: {"response": ...}}) and metrics/eval/<model>.json (its `judge_usage`
is the judge engine's usage over the whole run, shared by the candidates judged together), and
logs each candidate's metrics in a nested MLflow run `judge-<model>` tagged `candidate` (with one
`--model NAME`, as DVC runs it, in the stage run itself, named `judge-<model>`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.bench.schema import BenchItem, load_bench
from janus_align.config import Params
from janus_align.config.schema import JudgeConfig
from janus_align.errors import JanusError
from janus_align.evaluate import reliability, scoring
from janus_align.evaluate.judge_prompt import TEMPLATE_VERSION
from janus_align.evaluate.judging import judge_candidates, open_judge
from janus_align.evaluate.official_evaluation import official_evaluation, official_responses
from janus_align.evaluate.responses import Response, load_candidate_responses
from janus_align.evaluate.rows import Judgment
from janus_align.llm import LLMEngine
from janus_align.records import write_json, write_jsonl


def judge_metadata(engine: LLMEngine, params: Params) -> dict[str, Any]:
    """What every candidate's metrics record about the judge: its model id, repeats and usage."""
    return {
        "judge_model": engine.model_id,
        "judge_repeats": params.judge.repeats,
        "judge_usage": engine.usage.as_dict(),
    }


def returned_models(judgments: Sequence[Judgment]) -> dict[str, str]:
    """The tag of the judge's exact model ids as the API returned them (several: the alias moved mid-run)."""
    ids = sorted({j.judge_model_returned for j in judgments if j.judge_model_returned})
    return {"judge_model_returned": ",".join(ids)} if ids else {}


def write_outputs(
    model: str,
    items: Sequence[BenchItem],
    responses: Mapping[str, Response],
    judgments: Sequence[Judgment],
    judgments_path: Path,
    official_path: Path,
    metrics_path: Path,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the three judge outputs; return the metrics."""
    write_jsonl(judgments_path, judgments)
    write_json(official_path, official_evaluation(items, responses, judgments))
    metrics = {"model": model, **scoring.summarize(judgments, items, responses), **(extra or {})}
    write_json(metrics_path, metrics)
    return metrics


def describe(model: str, metrics: Mapping[str, Any]) -> str:
    """One line for the terminal, the unscored rate included."""
    score = metrics.get("overall")
    shown = f"{score:.3f}" if score is not None else "n/a"
    return (
        f"judge {model}: overall {shown} over {metrics['scored_items']}/{metrics['items']} items; "
        f"unscored {metrics['unscored']}/{metrics['judgments']} verdicts ({metrics['unscored_rate']:.1%}), "
        f"{metrics['failed_calls']} failed judge call(s)"
        + ("; a re-run asks the judge again for the unscored ones" if metrics["unscored"] else "")
    )


def candidate_names(params: Params, models: Sequence[str] | None = None) -> list[str]:
    """The candidates to judge: `models` if given, else generate.candidates + generate.external (duplicates once)."""
    return list(dict.fromkeys(models or [*params.generate.candidates, *params.generate.external]))


def run(params: Params, models: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Judge `models` (default: every candidate) in one batch; write and log each one's outputs."""
    import mlflow

    from janus_align import tracking

    names = candidate_names(params, models)
    if not names:
        raise JanusError("judge: no candidates (generate.candidates and generate.external are empty)")
    responses = load_candidate_responses(names, "judge")
    items = load_bench(paths.BENCH_FILE)
    with open_judge(params.judge) as engine:
        calibration = calibrate(engine, params.judge, params.seed)
        reliability.check_calibration(calibration, params.judge, engine.model_id)
        judgments = judge_candidates(engine, items, responses, params.judge, params.seed)
        extra = judge_metadata(engine, params)
    second = second_opinion(items, responses, judgments, params)
    tags = {"judge_model": extra["judge_model"], "judge_template": TEMPLATE_VERSION}
    mlflow.set_tags({**tags, "candidates": ",".join(names)})
    mlflow.log_metrics(tracking.metrics({"judge_usage": extra["judge_usage"]}))
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        metrics = write_outputs(
            name,
            items,
            responses[name],
            judgments[name],
            paths.judgments_file(name),
            paths.official_file(name),
            paths.eval_metrics_file(name),
            {
                **extra,
                "calibration": calibration,
                "repeat_stability": reliability.repeat_stability(judgments[name]),
                "second_judge": second.get(name),
            },
        )
        write_json(paths.official_responses_file(name), official_responses(items, responses[name]))
        print(describe(name, metrics))
        # One candidate (DVC's `judge@<name>`): the stage run, named `judge-<name>`, is its run.
        with nullcontext() if models and len(names) == 1 else mlflow.start_run(run_name=f"judge-{name}", nested=True):
            returned = returned_models(judgments[name])
            mlflow.set_tags({**tracking.run_tags("judge", params), **tags, "candidate": name, **returned})
            mlflow.log_metrics(tracking.metrics(metrics))
        results[name] = metrics
    for name in names:  # every candidate's files are written first: the failure keeps them for the record
        reliability.check_unscored(name, results[name], params.judge, paths.judgments_file(name))
    return results


def calibrate(engine: LLMEngine, config: JudgeConfig, seed: int) -> dict[str, Any]:
    """The judge's grades on the calibration set (data/calibration/judge.jsonl) against the known ones."""
    cal_items = reliability.load_calibration(paths.JUDGE_CALIBRATION)
    rows = judge_candidates(
        engine, cal_items, {"calibration": reliability.calibration_responses(cal_items)}, config, seed
    )["calibration"]
    result = reliability.calibration_result(cal_items, rows, paths.JUDGE_CALIBRATION)
    kappa = result["weighted_kappa"]
    print(
        f"judge calibration ({engine.model_id}): weighted kappa {'n/a' if kappa is None else f'{kappa:.3f}'} "
        f"on {result['n']} graded verdicts (min_kappa {config.calibration.min_kappa})"
    )
    return result


def second_opinion(
    items: Sequence[BenchItem],
    responses: Mapping[str, Mapping[str, Response]],
    judgments: Mapping[str, Sequence[Judgment]],
    params: Params,
) -> dict[str, dict[str, Any]]:
    """{candidate: agreement of `judge.second` with the judge}; empty when no second judge is set.

    The second judge grades the same answers once (one repeat, the same prompts and seeds), and
    its calibration is measured too (reported, not enforced: it is the judge being checked against).
    """
    if params.judge.second is None:
        return {}
    config = params.judge.model_copy(update={"llm": params.judge.second, "repeats": 1})
    with open_judge(config) as engine:
        calibration = calibrate(engine, config, params.seed)
        second = judge_candidates(engine, items, responses, config, params.seed)
        model_id = engine.model_id
    out = {}
    for name, rows in second.items():
        agreement = reliability.judge_agreement(judgments[name], rows)
        out[name] = {"judge_model": model_id, **agreement, "calibration_kappa": calibration["weighted_kappa"]}
        print(
            f"judge {name}: second judge {model_id} agrees on {agreement['n']} verdicts, weighted kappa "
            f"{agreement['weighted_kappa']}, spearman {agreement['spearman']}"
        )
    return out
