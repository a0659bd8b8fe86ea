"""The frame every training stage shares: log the data, train (here or under accelerate), log
the model, and leave a record beside the checkpoint that the registry reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from janus_align import paths, tracking
from janus_align.config import Params
from janus_align.models.train_record import read_train_record, write_train_record
from janus_align.train import launch
from janus_align.train.datasets import load_split
from janus_align.train.mlflow_logging import log_split


def run_training_stage(
    params: Params,
    stage: str,
    model_name: str,
    splits: list[str],
    train: Callable[[Params], Any],
    chat_model: bool = True,
) -> Path:
    """Run one training stage inside the stage's active MLflow run.

    `train(params)` does the training and saves `artifacts/models/<model_name>/` with its
    `janus_train.json`; it runs in this process, or in every `accelerate launch` worker when
    train.common.distributed is set. Afterwards the checkpoint is logged as a chat model (when
    `mlflow.log_trained_models`) and the record gains the run id and model URI.
    """
    import mlflow

    for name in splits:
        log_split(load_split(name, params.train.common.eval_fraction, params.seed))
    started = time.perf_counter()
    if launch.is_distributed(params):
        launch.run_distributed(stage, params)
    else:
        train(params)
    train_s = time.perf_counter() - started
    out = paths.model_dir(model_name)
    run = mlflow.active_run()
    record = read_train_record(out).model_copy(
        update={"stage": stage, "run_id": run.info.run_id if run else None, "train_wall_s": round(train_s, 2)}
    )
    if chat_model and run is not None and params.mlflow.log_trained_models:
        from janus_align.registry.chat_model import log_chat_model

        record = record.model_copy(update={"model_uri": log_chat_model(out, record.prompt_format, params)})
    write_train_record(out, record)
    if run is not None:
        mlflow.log_metrics({**tracking.metrics(record.metrics, "final/"), "train_wall_s": train_s})
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in record.metrics.items() if isinstance(v, float))
    print(f"{stage}: {out} ({metrics}; {train_s:.0f} s)")
    return out
