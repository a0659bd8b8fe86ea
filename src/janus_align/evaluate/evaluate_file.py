"""`janus evaluate --bench FILE --responses FILE --out DIR`: judge any responses against any bench.

Both files may be ours or the official formats (the bench as JSON, JSONL or parquet with
`rubrics` or `rubric`; responses as our JSONL or the official `{id: {"response": ...}}` JSON).
The judge is the one in params.yaml (`judge`), exactly as the judge stage runs it. Writes to DIR:
`<name>_judgments.jsonl`, `<name>_evaluation.json` (official format) and `<name>_scores.json`,
where <name> is the responses file's name without its extension and without `_responses` or
`_evaluation` (an evaluation file holds each response too, so it is a responses file: judging
`sft_evaluation.json` again writes `sft_evaluation.json`, not `sft_evaluation_evaluation.json`);
prints the scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from janus_align.bench.schema import load_bench
from janus_align.config import load_params
from janus_align.errors import JanusError
from janus_align.evaluate.judge import describe, judge_metadata, write_outputs
from janus_align.evaluate.judging import judge_candidates, open_judge
from janus_align.evaluate.responses import load_responses

# What the official scripts and this command append to a model's name in their file names.
NAME_SUFFIXES = ("_responses", "_evaluation")


def responses_name(path: Path) -> str:
    """The model's name: `gpt-4_responses.json` and `gpt-4_evaluation.json` -> `gpt-4`, `base.jsonl` -> `base`."""
    stem = path.stem
    for suffix in NAME_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem.removesuffix(suffix)
    return stem


def main(args: argparse.Namespace) -> dict:
    params = load_params(args.params)
    bench_path, responses_path, out = Path(args.bench), Path(args.responses), Path(args.out)
    items = load_bench(bench_path)
    responses = load_responses(responses_path)
    known = {item.id for item in items}
    unknown = sorted(set(responses) - known)
    if unknown:
        raise JanusError(
            f"{responses_path}: {len(unknown)} id(s) are not in {bench_path} (first: {unknown[0]!r}); "
            "are these responses to another bench?"
        )
    missing = len(known - set(responses))
    if missing:
        print(f"evaluate: {missing} bench item(s) have no response in {responses_path}; they count as unscored")
    name = responses_name(responses_path)
    with open_judge(params.judge) as engine:
        judgments = judge_candidates(engine, items, {name: responses}, params.judge, params.seed)[name]
        extra = judge_metadata(engine, params)
    metrics = write_outputs(
        name,
        items,
        responses,
        judgments,
        out / f"{name}_judgments.jsonl",
        out / f"{name}_evaluation.json",
        out / f"{name}_scores.json",
        {"bench": str(bench_path), "responses": str(responses_path), **extra},
    )
    print(describe(name, metrics))
    print(json.dumps({k: metrics[k] for k in ("overall", "per_source", "per_dimension")}, indent=2))
    print(f"evaluate: wrote {out}/{name}_judgments.jsonl, {name}_evaluation.json, {name}_scores.json")
    return metrics
