"""The `validate` stage and `janus validate-data`: Great Expectations suites over the splits.

The stage reads the five splits under artifacts/collection/, checks each with its suite
(suites.py) in a file Data Context at gx/, publishes the Data Docs to reports/data_docs/, writes
metrics/validation.json, logs both to the active MLflow run, and raises JanusError when a critical
expectation failed (after writing the summary), which stops `dvc repro`.

`janus validate-data --kind K FILE` runs the same suite on any one file, ours or official
(JSON, JSONL, parquet), in an ephemeral context, without the cross-split row counts.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from janus_align import headline_metrics, paths
from janus_align.config import Params, load_params
from janus_align.config.schema import SynthConfig
from janus_align.errors import JanusError
from janus_align.records import write_json
from janus_align.validate import data_docs
from janus_align.validate.frames import (
    DERIVED_FROM,
    ROW_REF,
    SPLITS,
    build_frame,
    file_columns,
    load_bench_prompts,
    read_rows,
    split_files,
)
from janus_align.validate.suites import build_expectations, cross_split_parameters

GX_ROOT = Path(".")  # the file context lives in ./gx (gx/uncommitted is git-ignored)
GX_DOCS_SITE = Path("gx") / "uncommitted" / "data_docs" / "local_site"
GX_VALIDATIONS = Path("gx") / "uncommitted" / "validations"
SAMPLES = 3  # offending rows quoted per failed expectation
RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "unexpected_index_column_names": [ROW_REF],
    "partial_unexpected_count": 20,
}


@dataclass
class Failure:
    """One failed expectation, in words a user can act on."""

    split: str
    expectation: str
    column: str | None
    check: str
    critical: bool
    detail: str
    samples: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        text = f"[{self.split}] {self.expectation}{where} ({self.check}): {self.detail}"
        if self.samples:
            text += "\n      e.g. " + "\n           ".join(self.samples)
        return text


@dataclass
class SplitResult:
    """What one suite run found: counts for metrics/validation.json, failures for the message."""

    split: str
    kind: str
    rows: int
    evaluated: int
    successful: int
    failures: list[Failure]
    checks: list[tuple[str, str]]  # ("ok" | "FAIL" | "warn" | "skip", line) per expectation, for the report

    @property
    def critical_failures(self) -> list[Failure]:
        return [f for f in self.failures if f.critical]

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "evaluated": self.evaluated,
            "successful": self.successful,
            "failed": len(self.failures),
            "critical_failed": len(self.critical_failures),
            "success": not self.critical_failures,
        }


def _short(value: Any, limit: int = 70) -> str:
    if value is None or (isinstance(value, float) and value != value):  # pandas turns None into NaN
        return "null"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exception_message(info: Any) -> str | None:
    """GX reports an exception either flat or keyed by metric id; return its message."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("exception_message"):
            return str(value["exception_message"]).splitlines()[0]
    return None


def _samples(result: dict[str, Any]) -> list[str]:
    rows = result.get("partial_unexpected_index_list") or []
    samples = []
    for row in rows[:SAMPLES]:
        if isinstance(row, dict):
            ref = row.get(ROW_REF, "?")
            values = ", ".join(f"{k}={_short(v)}" for k, v in row.items() if k != ROW_REF)
            samples.append(f"{ref}: {values}")
    if not samples:
        samples = [_short(v) for v in (result.get("partial_unexpected_list") or [])[:SAMPLES]]
    return samples


def _columns_not_in_file(kwargs: dict[str, Any], present: list[str]) -> list[str]:
    """The file's columns an expectation reads (a derived column's sources) that the file lacks."""
    checked = [kwargs["column"]] if kwargs.get("column") else list(kwargs.get("column_list") or [])
    sources = [source for name in checked for source in DERIVED_FROM.get(name, (name,))]
    return sorted({source for source in sources if source not in present})


def _column_set_detail(expected: list[str], present: list[str]) -> str:
    """What the column-set expectation found, in the file's own columns (GX's observed value
    would list the validator's derived columns too)."""
    missing = sorted(set(expected) - set(present))
    other = sorted(set(present) - set(expected))
    return f"the file's columns are {sorted(present)}; the schema needs {list(expected)}; missing {missing}" + (
        f"; not in the schema {other}" if other else ""
    )


def _failure(split: str, outcome: Any, present: list[str]) -> Failure:
    """One failed expectation; `present` is the columns of the user's file."""
    config = outcome.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.get("column") or (",".join(kwargs["column_list"]) if kwargs.get("column_list") else None)
    result = outcome.result or {}
    message = _exception_message(outcome.exception_info)
    bounds = {
        k: kwargs[k] for k in ("value", "min_value", "max_value", "value_set", "regex", "column_set") if k in kwargs
    }
    expected = f" (expected {bounds})" if bounds else ""
    absent = _columns_not_in_file(kwargs, present)
    if "column_set" in kwargs:
        detail = _column_set_detail(kwargs["column_set"], present)
    elif absent:
        detail = f"the file has no column {', '.join(map(repr, absent))}"
    elif message:
        detail = f"could not be evaluated: {message}"
    elif "unexpected_count" in result:
        detail = f"{result['unexpected_count']} of {result.get('element_count', '?')} rows unexpected{expected}"
    else:
        mismatch = (result.get("details") or {}).get("mismatched")
        detail = f"observed {_short(result.get('observed_value'), 200)}{expected}"
        detail += f"; mismatched {mismatch}" if mismatch else ""
    severity = str(getattr(config, "severity", "critical") or "critical")
    return Failure(
        split=split,
        expectation=config.type,
        column=column,
        check=(config.meta or {}).get("check", ""),
        critical=severity.lower().endswith("critical"),
        detail=detail,
        samples=[] if absent else _samples(result),  # rows of a column the file lacks show only nulls
    )


def _quiet_context(context: Any) -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bar per suite
    return context


def _get_or_add(get: Callable[[], Any], add: Callable[[], Any]) -> Any:
    """Reuse what the file context already holds: re-adding would mint new ids in gx/ every run."""
    from great_expectations.exceptions import DataContextError

    try:
        return get()
    except (LookupError, DataContextError):
        return add()


def _same_expectations(left: list[Any], right: list[Any]) -> bool:
    """Equal ignoring ids (GX's own add_or_update compares ids too, so it re-ids every time)."""

    def plain(expectations: list[Any]) -> list[dict[str, Any]]:
        return [e.dict(exclude={"id", "rendered_content"}) for e in expectations]

    return len(left) == len(right) and plain(left) == plain(right)


def _checkpoint(context: Any, name: str, asset_name: str, expectations: list[Any]) -> Any:
    """The checkpoint `name` validating a whole dataframe against `expectations`.

    The suite is rewritten only when its expectations changed (params bounds), so the files
    under gx/ stay the same from run to run.
    """
    import great_expectations as gx

    source = _get_or_add(lambda: context.data_sources.get("janus"), lambda: context.data_sources.add_pandas("janus"))
    asset = _get_or_add(lambda: source.get_asset(asset_name), lambda: source.add_dataframe_asset(name=asset_name))
    batch = _get_or_add(
        lambda: asset.get_batch_definition("all_rows"), lambda: asset.add_batch_definition_whole_dataframe("all_rows")
    )
    suite = _get_or_add(lambda: context.suites.get(name), lambda: None)
    if suite is None or not _same_expectations(suite.expectations, expectations):
        suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = _get_or_add(
        lambda: context.validation_definitions.get(name),
        lambda: context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite)),
    )
    return _get_or_add(
        lambda: context.checkpoints.get(name),
        lambda: context.checkpoints.add(
            gx.Checkpoint(name=name, validation_definitions=[definition], actions=[], result_format=RESULT_FORMAT)
        ),
    )


def validate_frame(
    context: Any,
    split: str,
    kind: str,
    frame: pd.DataFrame,
    synth: SynthConfig,
    cross_split: bool = False,
    parameters: dict[str, int] | None = None,
) -> SplitResult:
    """Run the suite of `kind` over `frame` as the checkpoint `janus_<split>` of `context`.

    The results land in the context's validation store; the stage builds the Data Docs once
    after every split ran (an UpdateDataDocsAction per checkpoint would rebuild the site 5 times).
    """
    checkpoint = _checkpoint(context, f"janus_{split}", split, build_expectations(kind, synth, cross_split=cross_split))
    run = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters or {})
    (suite_result,) = run.run_results.values()
    failures, checks = [], []
    present = file_columns(frame)
    # The column-set check first: when the file is not of this kind, it says why the rest failed.
    outcomes = sorted(suite_result.results, key=lambda o: "column_set" not in o.expectation_config.kwargs)
    for outcome in outcomes:
        config = outcome.expectation_config
        label = f"{config.type}({config.kwargs.get('column') or config.kwargs.get('column_list') or ''})"
        check = (config.meta or {}).get("check", "")
        absent = _columns_not_in_file(dict(config.kwargs), present)
        if outcome.success and absent:  # passed only because there was nothing to check
            checks.append(
                ("skip", f"{label}: {check} (not checked: the file has no column {', '.join(map(repr, absent))})")
            )
        elif outcome.success:
            checks.append(("ok", f"{label}: {check}"))
        else:
            failures.append(_failure(split, outcome, present))
            checks.append(("FAIL" if failures[-1].critical else "warn", failures[-1].describe()))
    stats = suite_result.statistics
    return SplitResult(
        split=split,
        kind=kind,
        rows=len(frame),
        evaluated=int(stats["evaluated_expectations"]),
        successful=int(stats["successful_expectations"]),
        failures=failures,
        checks=checks,
    )


def _file_context() -> Any:
    """The project's file context, with the previous run's results and docs removed so the Data
    Docs show this run only (history lives in MLflow and DVC)."""
    import great_expectations as gx

    for stale in (GX_VALIDATIONS, GX_DOCS_SITE):
        shutil.rmtree(stale, ignore_errors=True)
    return _quiet_context(gx.get_context(mode="file", project_root_dir=str(GX_ROOT)))


def _publish_data_docs(context: Any, results: list[SplitResult]) -> Path:
    """Build GX's Data Docs and publish them to reports/data_docs/, made to render offline (data_docs.py)."""
    context.build_data_docs()
    return data_docs.publish(GX_DOCS_SITE, paths.DATA_DOCS, results, all(not r.critical_failures for r in results))


def summarize(results: list[SplitResult]) -> dict[str, Any]:
    """metrics/validation.json: per split evaluated/successful/failed/success, and what failed
    (without the sample rows, which stay in the error message and the Data Docs)."""
    return {
        "success": all(not r.critical_failures for r in results),
        "splits": {r.split: r.summary() for r in results},
        "failures": [{k: v for k, v in asdict(f).items() if k != "samples"} for r in results for f in r.failures],
    }


def _log_to_mlflow(summary: dict[str, Any]) -> None:
    import mlflow

    if mlflow.active_run() is None:
        return
    metrics = {"validation.success": float(summary["success"])}
    for split, counts in summary["splits"].items():
        for key, value in counts.items():
            metrics[f"validation.{split}.{key}"] = float(value)
    mlflow.log_metrics(metrics)
    mlflow.log_artifact(str(paths.VALIDATION_METRICS))
    if paths.DATA_DOCS.is_dir():
        mlflow.log_artifacts(str(paths.DATA_DOCS), artifact_path="data_docs")


def _failure_message(header: str, failures: list[Failure], footer: str) -> str:
    return "\n".join([header, *("  " + f.describe() for f in failures), footer])


def run(params: Params) -> dict[str, Any]:
    """The validate stage: every split against its suite, cross-split row counts included."""
    bench_prompts = load_bench_prompts(paths.BENCH_PROMPTS)
    frames = {}
    for split in SPLITS:
        rows = read_rows(split_files(paths.COLLECTION / split), root=paths.COLLECTION)
        frames[split] = build_frame(split, rows, bench_prompts)
    parameters = cross_split_parameters({s: len(f) for s, f in frames.items()}, params.synth.sets_per_instruction)
    context = _file_context()
    results = [
        validate_frame(context, split, split, frame, params.synth, cross_split=True, parameters=parameters)
        for split, frame in frames.items()
    ]
    index = _publish_data_docs(context, results)
    summary = summarize(results)
    write_json(paths.VALIDATION_METRICS, summary)
    write_json(paths.VALIDATION_RESULT, headline_metrics.validation_result(summary))
    _log_to_mlflow(summary)
    for result in results:
        print(f"{result.split}: {result.rows} rows, {result.successful}/{result.evaluated} expectations passed")
    critical = [f for r in results for f in r.critical_failures]
    warnings = [f for r in results for f in r.failures if not f.critical]
    for warning in warnings:
        print("warning: " + warning.describe())
    if critical:
        raise JanusError(
            _failure_message(
                f"validation failed: {len(critical)} critical expectation(s) failed",
                critical,
                f"Data Docs: {index}; summary: {paths.VALIDATION_METRICS}",
            )
        )
    print(f"validation passed; Data Docs: {index}; summary: {paths.VALIDATION_METRICS}")
    return summary


def _params_or_defaults(path: str | Path) -> Params:
    """The project's params when validating inside a project, the defaults anywhere else."""
    return load_params(path) if Path(path).is_file() else Params()


def _bench_prompts_file() -> Path:
    if paths.BENCH_PROMPTS.is_file():
        return paths.BENCH_PROMPTS
    from janus_align.setup_data import bundled_data_dir

    return bundled_data_dir() / paths.BENCH_PROMPTS.relative_to(paths.DATA)


def validate_file(path: Path, kind: str, synth: SynthConfig, bench_prompts: list[str]) -> SplitResult:
    """One file against the suite of `kind`, in an ephemeral context (nothing written)."""
    import great_expectations as gx

    frame = build_frame(kind, read_rows([path]), bench_prompts)
    context = _quiet_context(gx.get_context(mode="ephemeral"))
    return validate_frame(context, kind, kind, frame, synth)


def format_report(path: Path, result: SplitResult) -> str:
    """The readable report `janus validate-data` prints: one line per expectation."""
    lines = [f"{path} as {result.kind}: {result.rows} rows, {result.successful}/{result.evaluated} expectations passed"]
    order = {"FAIL": 0, "warn": 1, "skip": 2, "ok": 3}
    for status, line in sorted(result.checks, key=lambda check: order[check[0]]):  # failures first
        lines.append(f"  {status:<5} {line}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    """`janus validate-data --kind K FILE`: print the report; JanusError (exit 2) on a critical failure."""
    path = Path(args.file)
    synth = _params_or_defaults(getattr(args, "params", "params.yaml")).synth
    bench_file = _bench_prompts_file()
    result = validate_file(path, args.kind, synth, load_bench_prompts(bench_file))
    print(format_report(path, result))
    print(f"(bench prompts from {bench_file}; cross-split row counts are checked by the validate stage only)")
    if result.critical_failures:
        raise JanusError(
            _failure_message(
                f"{path}: {len(result.critical_failures)} critical expectation(s) of the {args.kind} suite failed",
                result.critical_failures,
                "",
            ).rstrip()
        )
