"""MLflow bookkeeping shared by every stage: one parent run per pipeline run, a child per stage.

DVC runs each stage as its own process; they find their common parent run through the
`JANUS_PIPELINE_ID` environment variable that `make repro` sets (a stage run by hand gets a
parent of its own). Child runs carry the tags `stage`, `git_commit`, `data_version` and
`profile` (and `dvc_experiment` inside `dvc exp run`), and only the params their stage depends on:
the keys dvc.yaml lists under the stage's `params:`, expanded to their leaves under dotted names
(`judge.repeats`, `train.dpo.beta`), so MLflow's compare view and "Show diff only" show what
differs between two stages' settings rather than 170 shared ones. The parent run keeps the whole
params as its artifact `params.yaml`. `flatten` and `metrics` turn nested dicts into the flat
names MLflow logs, for every stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from janus_align.config import Params
from janus_align.errors import JanusError

PIPELINE_ENV = "JANUS_PIPELINE_ID"
# What DVC sets in each stage's environment (dvc/stage/run.py, dvc/repo/experiments/queue/base.py
# in DVC 3.67): the stage's address (`judge@base`) always, the experiment's name only under
# `dvc exp run` (in the workspace, --temp or the queue alike), never under `dvc repro`.
DVC_STAGE_ENV = "DVC_STAGE"
DVC_EXPERIMENT_ENV = "DVC_EXP_NAME"
_MLFLOW_NAME = re.compile(r"[^A-Za-z0-9_\-./ ]")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as MLflow's flat names: {"a": {"b": 1}} -> {"a.b": 1}.

    The one flattener for params and metrics alike; names keep only the characters MLflow
    accepts (others become `_`), so a group name such as `Alpha-nlg (art)` cannot fail a log call.

    >>> flatten({"judge": {"repeats": 3}, "per_source": {"Alpha (art)": 4.0}}, "final/")
    {'final/judge.repeats': 3, 'final/per_source.Alpha _art_': 4.0}
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = _MLFLOW_NAME.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def metrics(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of `flatten(tree, prefix)`, as floats, for mlflow.log_metrics.

    Strings, booleans, None, NaN and infinities are left out: they are not measurements.

    >>> metrics({"overall": 3.5, "model": "sft", "per_source": {"FLASK": 4, "Koala": None}})
    {'overall': 3.5, 'per_source.FLASK': 4.0}
    """
    return {
        name: float(value)
        for name, value in flatten(tree, prefix).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def data_version() -> str:
    """Hash of the DVC lock state of data.dvc and dvc.lock: which inputs and outputs a run used."""
    digest = hashlib.sha256()
    for name in ("data.dvc", "dvc.lock"):
        path = Path(name)
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def dvc_experiment() -> str | None:
    """The name of the DVC experiment this process runs in (`dvc exp run`), or None outside one.

    Such a run has not been applied to the workspace: what it registers must not move the
    shared `champion` alias (registry/register.py).
    """
    return os.environ.get(DVC_EXPERIMENT_ENV) or None


def dvc_stage_name(stage: str) -> str:
    """The dvc.yaml stage this process runs: DVC's `DVC_STAGE` without its `@item`, else `stage`.

    `janus judge --model gpt-x` is stage `judge_external@gpt-x` under DVC; run by hand it is `judge`.
    """
    address = os.environ.get(DVC_STAGE_ENV, "")
    return address.rsplit(":", 1)[-1].split("@", 1)[0] or stage


def stage_params(params: Params, stage: str, dvc_file: Path = Path("dvc.yaml")) -> dict[str, Any]:
    """The params dvc.yaml stage `stage` depends on, as MLflow names: its `params:` keys, expanded to leaves.

    A stage dvc.yaml does not list (no dvc.yaml, a stage run by hand from elsewhere) logs every
    param: with no declaration to go by, what could have mattered is all of it.
    """
    from janus_align.dvc_file import listed_params

    tree = params.model_dump(mode="json")
    listed = listed_params(dvc_file).get(stage) if dvc_file.is_file() else None
    if listed is None:
        return flatten(tree)
    chosen: dict[str, Any] = {}
    for key in listed:
        value: Any = tree
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise JanusError(f"{dvc_file}: stages.{stage}.params lists `{key}`, which params.yaml has not")
            value = value[part]
        chosen.update(flatten(value, f"{key}.") if isinstance(value, Mapping) else flatten({key: value}))
    return chosen


def stage_run_name(stage: str, options: Mapping[str, Any]) -> str:
    """A stage run's name, saying which candidates it ran for: `generate-sft`, `judge-base`, `judge`."""
    models = [options["model"]] if options.get("model") else list(options.get("models") or [])
    return "-".join(dict.fromkeys([stage, *models]))


def tracking_uri(params: Params) -> str:
    """The tracking (and registry) store in effect, by one rule: the user's `MLFLOW_TRACKING_URI`
    wins, then params' `mlflow.tracking_uri`, whose default is the local `sqlite:///mlflow.db`.

    A team points every clone at one `mlflow server` with either; nothing of ours sets the variable.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or params.mlflow.tracking_uri


def is_remote_store(uri: str) -> bool:
    """Whether `uri` is a tracking server (which keeps its own artifact root) rather than a local store."""
    return uri.split(":", 1)[0] in {"http", "https", "databricks"}


def print_tracking_uri(args: Any) -> None:
    """`janus tracking-uri`: the store in effect, for the Makefile's `ui` and `serve` and for scripts."""
    from janus_align.config import load_params

    print(tracking_uri(load_params(Path(args.params))))


def configure(params: Params) -> None:
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri(params)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(params.mlflow.experiment) is None:
        # A server stores artifacts under its own --artifacts-destination; a local path of this
        # clone would be meaningless to a teammate's.
        location = None
        if not is_remote_store(uri):
            local = Path(params.mlflow.artifact_location).resolve()
            local.mkdir(parents=True, exist_ok=True)
            location = local.as_uri()
        with contextlib.suppress(Exception):  # a concurrent worker may have created it
            mlflow.create_experiment(params.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(params.mlflow.experiment)


# `make repro` names a pipeline by its UTC start (`date -u +%Y%m%dT%H%M%SZ`): the parent run starts then.
PIPELINE_ID_FORMAT = "%Y%m%dT%H%M%SZ"


def _pipeline_start_ms(pipeline_id: str) -> int:
    """When the pipeline started, from its id where it is a timestamp, else now."""
    import calendar

    try:
        return calendar.timegm(time.strptime(pipeline_id, PIPELINE_ID_FORMAT)) * 1000
    except ValueError:
        return int(time.time() * 1000)


def _parent_run_id(params: Params) -> str:
    """The pipeline's parent run, created on first use with the pipeline's start time.

    DVC runs stages one process after another, and none knows which is last; so the parent is
    kept RUNNING while a stage runs and closed with that stage's outcome after each
    (`stage_run`): when the pipeline ends, the parent's end time and status are its last stage's.
    """
    import mlflow
    from mlflow import MlflowClient

    pipeline_id = os.environ.get(PIPELINE_ENV) or f"adhoc-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    os.environ[PIPELINE_ENV] = pipeline_id  # children spawned by this process share the parent
    experiment = mlflow.get_experiment_by_name(params.mlflow.experiment)
    assert experiment is not None  # configure() made it
    client = MlflowClient()
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.pipeline_id = '{pipeline_id}' and tags.kind = 'pipeline'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment.experiment_id,
        start_time=_pipeline_start_ms(pipeline_id),
        tags={"kind": "pipeline", "pipeline_id": pipeline_id, "profile": params.profile},
        run_name=f"pipeline-{pipeline_id}",
    )
    client.log_dict(run.info.run_id, params.model_dump(mode="json"), "params.yaml")  # the whole recipe, once
    return run.info.run_id


def run_tags(stage: str, params: Params) -> dict[str, str]:
    return {
        "stage": stage,
        "git_commit": git_commit(),
        "data_version": data_version(),
        "profile": params.profile,
        "base_model": params.model.base,
        "pipeline_id": os.environ.get(PIPELINE_ENV, ""),
    } | ({"dvc_experiment": experiment} if (experiment := dvc_experiment()) else {})


@contextlib.contextmanager
def stage_run(stage: str, params: Params, run_name: str | None = None) -> Iterator[Any]:
    """Open the child run of `stage` under the pipeline's parent run, logging the datasets it reads.

    >>> with stage_run("assemble", params):  # doctest: +SKIP
    ...     mlflow.log_metric("rows", 72)
    """
    import mlflow
    from mlflow import MlflowClient

    configure(params)
    parent = _parent_run_id(params)
    client = MlflowClient()
    client.update_run(parent, status="RUNNING")
    status = "FAILED"
    try:
        with mlflow.start_run(run_name=run_name or stage, parent_run_id=parent, nested=True) as run:
            mlflow.set_tags(run_tags(stage, params))
            mlflow.log_params(stage_params(params, dvc_stage_name(stage)))
            log_input_datasets(stage_inputs(dvc_stage_address(stage)))
            yield run
        status = "FINISHED"
    finally:
        client.set_terminated(parent, status=status)


def dvc_stage_address(stage: str) -> str:
    """The dvc.yaml address of the running stage (`judge@base`), else `stage` (run by hand)."""
    return os.environ.get(DVC_STAGE_ENV, "").rsplit(":", 1)[-1] or stage


def stage_inputs(address: str, dvc_file: Path = Path("dvc.yaml")) -> list[Path]:
    """The data a stage reads: its dvc.yaml deps that exist (files and folders), less code and models.

    `${item}` of a foreach stage is filled in from the address (`generate@sft`).
    """
    import yaml

    if not dvc_file.is_file():
        return []
    name, _, item = address.partition("@")
    stage = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")).get("stages") or {}).get(name) or {}
    stage = stage.get("do", stage)
    inputs = []
    for dep in stage.get("deps") or []:
        path = Path(str(dep).replace("${item}", item))
        if path.parts[:1] == ("src",) or path.parts[:2] == ("artifacts", "models") or "$" in str(path):
            continue
        if path.exists():
            inputs.append(path)
    return inputs


def content_digest(path: Path) -> str:
    """A short md5 of a file's bytes, or of a folder's files and their names, streamed
    (the digest MLflow shows for a dataset)."""
    digest = hashlib.md5(usedforsecurity=False)
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def log_input_datasets(files: list[Path]) -> None:
    """Log each file as an MLflow input dataset of the active run (the UI's Dataset column)."""
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    for path in files:
        with warnings.catch_warnings():  # MLflow warns that a local file source is not portable
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(str(path.resolve()))
        # MLflow documents MetaDataset as concrete; its stubs leave `profile` abstract.
        dataset = MetaDataset(source=source, name=str(path), digest=content_digest(path))  # type: ignore[abstract]
        mlflow.log_input(dataset, context="input")
