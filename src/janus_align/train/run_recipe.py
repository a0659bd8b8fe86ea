"""One training run, the frame every recipe shares: build the trainer, train, take the held-out
loss, save the checkpoint (train/checkpoints.py) and write its record (models/train_record.py).

A recipe module (train_sft, train_dpo, train_orpo, train_rm) supplies only its trainer
builder, one shape for all (`TrainerBuilder`); the tune trials and the reward model's SFT init
call `fit` with the SFT builder. The frame adds the MLflow step logger and logs the trainer
config, so a builder only turns settings and rows into a TRL trainer.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from janus_align import paths
from janus_align.config import Params
from janus_align.models.train_record import TrainRecord, write_train_record
from janus_align.train.checkpoints import ModelKind, save_trained
from janus_align.train.datasets import SplitRows, load_split
from janus_align.train.mlflow_logging import MlflowStepLogger, log_trainer_config
from janus_align.train.settings import RecipeName, RecipeSettings, resolve
from janus_align.train.trl_arguments import training_args


class BuiltTrainer(NamedTuple):
    """What a builder returns: the trainer, its tokenizer, and the chat template to save with the
    model (the tokenizer's own: SFT trains under a copy marked for the assistant-only loss)."""

    trainer: Any
    tokenizer: Any
    chat_template: Any


@dataclass(frozen=True)
class TrainerJob:
    """What a builder gets to make the TRL trainer of one run: the one shape every recipe takes."""

    params: Params
    settings: RecipeSettings
    split: SplitRows
    start_from: Path
    output_dir: str | Path
    callbacks: Sequence[Any] = ()

    def training_args(self, has_eval: bool) -> dict[str, Any]:
        """The keyword arguments every TRL config of this run shares (`trl_arguments.training_args`)."""
        return training_args(self.settings, self.params.seed, self.output_dir, has_eval)


class TrainerBuilder(Protocol):
    def __call__(self, job: TrainerJob) -> BuiltTrainer:
        """The TRL trainer for one run of the recipe, with `job.callbacks` passed to it."""
        ...


def is_main_process() -> bool:
    """False in the accelerate workers other than rank 0 (they train but do not write files)."""
    return os.environ.get("RANK", "0") == "0"


def final_eval_loss(trainer: Any) -> float | None:
    """The held-out loss after the last step: the one logged at that step, else a fresh evaluation.

    None when there is nothing to evaluate: no held-out rows, or none left after the trainer's
    own preprocessing (TRL drops a row whose answer is cut away entirely by `max_length`).
    """
    if trainer.eval_dataset is None or len(trainer.eval_dataset) == 0:
        return None
    for entry in reversed(trainer.state.log_history):
        if "eval_loss" in entry:
            if entry.get("step") == trainer.state.global_step:
                return float(entry["eval_loss"])
            break
    loss = trainer.evaluate().get("eval_loss")
    return None if loss is None else float(loss)


def _train(trainer: Any) -> dict[str, Any]:
    """Train; the train loss, steps and the final held-out metrics (no runtimes)."""
    result = trainer.train()
    metrics: dict[str, Any] = {"train_loss": float(result.training_loss), "steps": int(result.global_step)}
    eval_loss = final_eval_loss(trainer)
    if eval_loss is not None:
        metrics["eval_loss"] = eval_loss
        last_eval: dict[str, Any] = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), {})
        metrics.update(
            {
                k: float(v)
                for k, v in last_eval.items()
                if k.startswith("eval_")
                and k != "eval_loss"
                and isinstance(v, (int, float))
                and "runtime" not in k
                and "per_second" not in k
            }
        )
    return metrics


def fit(
    params: Params,
    settings: RecipeSettings,
    split: SplitRows,
    build_trainer: TrainerBuilder,
    start_from: Path,
    out: Path | None,
    kind: ModelKind = "causal",
    callbacks: Sequence[Any] = (),
    metric_prefix: str = "",
) -> dict[str, Any]:
    """Train one model from `start_from`; save it at `out` (None: keep nothing, as tune trials do).

    `metric_prefix` keeps two trainings of one MLflow run apart (the RM stage's `init_sft/`);
    it also names the logged trainer config (else the recipe's name). Returns the metrics.
    """
    with tempfile.TemporaryDirectory(prefix=f"janus-{settings.name}-") as tmp:
        job = TrainerJob(params, settings, split, start_from, tmp, [MlflowStepLogger(metric_prefix), *callbacks])
        built = build_trainer(job)
        log_trainer_config(metric_prefix.rstrip("/") or settings.name, built.trainer.args, settings.as_dict())
        metrics = _train(built.trainer)
        if out is not None:
            save_trained(built.trainer, built.tokenizer, out, params, start_from, built.chat_template, kind)
    return metrics


def train_recipe(
    params: Params,
    name: RecipeName,
    build_trainer: TrainerBuilder,
    start_from: Path,
    kind: ModelKind = "causal",
    tuned: Mapping[str, Any] | None = None,
    record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train recipe `name` on its split from `start_from`; save artifacts/models/<name>/ and its record.

    `tuned` overrides the recipe's settings (the tune stage's winner, recorded as `tuned_params`);
    `record` adds to (or overrides) the record's keys (validated: a misspelt key is an error).
    """
    settings = resolve(params, name, tuned)
    split = load_split(name, params.train.common.eval_fraction, params.seed)
    out = paths.model_dir(name)
    metrics = fit(params, settings, split, build_trainer, start_from, out, kind)
    if is_main_process():
        fields: dict[str, Any] = {
            "model": name,
            "kind": kind,
            "recipe": settings.as_dict(),
            "metrics": metrics,
            "prompt_format": params.model.prompt_format,
            "start_from": str(start_from),
            "train_rows": len(split.train),
            "eval_rows": len(split.eval),
        }
        if tuned is not None:
            fields["tuned_params"] = dict(tuned)
        write_train_record(out, TrainRecord.model_validate(fields | dict(record or {})))
    return metrics
