"""Stage `assemble`: the five splits, their dataset cards, and the synthesis summary.

Reads artifacts/synth/responses.jsonl and the stats each generating stage wrote; writes
artifacts/collection/<split>/train.parquet (rm also test.parquet) in exactly the released
schemas (see `splits`), beside each its TRL-native twin (<split>/trl/, read by TRL's trainers
as it is), a README.md card per split (configs `default` and `trl`), and metrics/synthesis.json: counts per
stage, rejects, tokens in/out, estimated cost, wall time and requests/s. The same numbers go
to the active MLflow run and to the pipeline's `synthesis` run, with every split logged as an
MLflow dataset input.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from janus_align import headline_metrics, paths
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.records import read_json_object, write_json
from janus_align.synth.cards import dataset_card
from janus_align.synth.prompts import TEMPLATE_VERSION
from janus_align.synth.rows import ResponseRow, read_rows
from janus_align.synth.splits import SCHEMAS, TRL_SCHEMAS, build_splits, write_parquet
from janus_align.synth.synthesis_run import synthesis_run

STAGE = "assemble"
NOT_MADE = "not found (run the stage that writes it first)"


def summarize(
    stage_stats: dict[str, dict[str, Any]],
    instructions: dict[str, Any],
    split_counts: dict[str, int],
    responses: list[ResponseRow],
) -> dict[str, Any]:
    """metrics/synthesis.json from what each stage recorded."""
    fresh = sum(s["engine"]["requests"] - s["engine"]["cached"] for s in stage_stats.values())
    engine_wall = sum(s["engine"]["wall_s"] for s in stage_stats.values())
    wall = sum(s["wall_s"] for s in stage_stats.values())
    teachers = sorted({s["teacher"] for s in stage_stats.values()})
    totals = {
        "requests": sum(s["engine"]["requests"] for s in stage_stats.values()),
        "requests_fresh": fresh,
        "requests_cached": sum(s["engine"]["cached"] for s in stage_stats.values()),
        "rejected": sum(s["rejected"] for s in stage_stats.values()),
        "prompt_tokens": sum(s["prompt_tokens"] for s in stage_stats.values()),
        "completion_tokens": sum(s["completion_tokens"] for s in stage_stats.values()),
        "cost_usd": round(sum(s["cost_usd"] for s in stage_stats.values()), 6),
        "wall_s": round(wall, 3),
        "requests_per_s": round(fresh / engine_wall, 3) if engine_wall else 0.0,
    }
    return {
        "teacher": teachers[0] if len(teachers) == 1 else teachers,
        "template_version": TEMPLATE_VERSION,
        "instructions": {k: instructions.get(k) for k in ("read", "removed_total", "kept", "sampled")},
        "stages": {
            name: {k: v for k, v in s.items() if k not in ("stage", "teacher", "template_version")}
            for name, s in stage_stats.items()
        },
        "rows": {"instructions": len({r.instruction_id for r in responses}), "responses": len(responses)},
        "splits": split_counts,
        "totals": totals,
    }


def run(params: Params) -> dict[str, Any]:
    started = time.perf_counter()
    responses = read_rows(paths.SYNTH_RESPONSES, ResponseRow)
    if not responses:
        raise JanusError(f"{paths.SYNTH_RESPONSES}: no rows to assemble")
    stage_stats = {
        stage: read_json_object(paths.stats(stage), NOT_MADE, JanusError) for stage in paths.GENERATING_STAGES
    }
    instructions = read_json_object(paths.INSTRUCTIONS_METRICS, NOT_MADE, JanusError)
    assembled = build_splits(responses, params.seed, params.synth.rm_test_fraction, params.synth.sets_per_instruction)
    splits, incomplete = assembled.splits, assembled.incomplete
    if not splits["dpo"]:
        raise JanusError(
            f"{paths.SYNTH_RESPONSES}: no instruction has all {params.synth.sets_per_instruction} sets with distinct "
            f"system messages and two different responses ({incomplete} incomplete), so no preference pair"
        )

    # The files of each split: HF split name -> file (official, then TRL-native), inside the split folder.
    parts = {name: ("train", "test") if name == "rm" else ("train",) for name in paths.SPLITS}
    shutil.rmtree(paths.COLLECTION, ignore_errors=True)
    for name in paths.SPLITS:
        for part in parts[name]:
            key = "rm_test" if part == "test" else name
            write_parquet(paths.split_dir(name) / f"{part}.parquet", splits[key], SCHEMAS[name])
            write_parquet(paths.trl_file(name, part), assembled.trl[key], TRL_SCHEMAS[name])
    split_counts = {name: len(splits[name]) for name in paths.SPLITS}
    split_counts["rm_test"] = len(splits["rm_test"])

    summary = summarize(stage_stats, instructions, split_counts, responses)
    summary["rows"]["instructions_incomplete"] = incomplete
    summary["totals"]["assemble_wall_s"] = round(time.perf_counter() - started, 3)
    write_json(paths.SYNTHESIS_METRICS, summary)
    write_json(paths.COLLECTION_METRICS, headline_metrics.collection(split_counts))

    for name in paths.SPLITS:
        counts = {"train": split_counts[name]}
        if name == "rm":
            counts["test"] = split_counts["rm_test"]
        layout = {
            "default": {part: f"{part}.parquet" for part in parts[name]},
            "trl": {
                part: paths.trl_file(name, part).relative_to(paths.split_dir(name)).as_posix() for part in parts[name]
            },
        }
        card = dataset_card(name, layout, counts, assembled.preference_sets(name), params, summary)
        (paths.split_dir(name) / "README.md").write_text(card, encoding="utf-8")
    _log(params, summary, splits)
    print(
        "assemble: "
        + ", ".join(f"{k} {v}" for k, v in split_counts.items())
        + f"; tokens {summary['totals']['prompt_tokens']} in / {summary['totals']['completion_tokens']} out, "
        f"cost ${summary['totals']['cost_usd']:.4f}"
    )
    return summary


def _metrics(summary: dict[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, value in summary["totals"].items():
        values[f"total_{key}"] = float(value)
    for split, count in summary["splits"].items():
        values[f"rows_{split}"] = float(count)
    for stage, stats in summary["stages"].items():
        for key in ("rows_out", "rejected", "reject_rate", "truncated", "prompt_tokens", "completion_tokens", "wall_s"):
            values[f"{stage}_{key}"] = float(stats[key])
    for key, value in summary["instructions"].items():
        if isinstance(value, (int, float)):
            values[f"instructions_{key}"] = float(value)
    return values


def _log(params: Params, summary: dict[str, Any], splits: dict[str, list[dict]]) -> None:
    import mlflow
    import pandas as pd

    if mlflow.active_run() is None:
        return
    metrics = _metrics(summary)
    mlflow.log_metrics(metrics)
    with synthesis_run(params):
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"teacher": str(summary["teacher"]), "template_version": summary["template_version"]})
        for name in (*paths.SPLITS, "rm_test"):
            if not splits[name]:
                continue
            split, part = ("rm", "test") if name == "rm_test" else (name, "train")
            path = paths.split_dir(split) / f"{part}.parquet"
            dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]  # mlflow.data re-exports it lazily
                pd.DataFrame(splits[name]), source=str(path), name=name
            )
            mlflow.log_input(dataset, context="training" if part == "train" else "evaluation")
        mlflow.log_artifact(str(paths.SYNTHESIS_METRICS))
        for split in paths.SPLITS:
            mlflow.log_artifact(str(paths.split_dir(split) / "README.md"), artifact_path=f"cards/{split}")
