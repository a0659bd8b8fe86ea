"""Stages `train_sft` (Janus: SFT on the full split) and `train_sft_small` (Janus*: the small split).

Both start from the base checkpoint and read the tune stage's winning learning rate, epochs,
LoRA rank and warmup from artifacts/tune/best_params.json when it exists. The loss covers the
assistant's tokens only: conversational rows with a chat template that marks them
(`{% generation %}`, see chat_template.py), else prompt/completion rows (TRL masks the prompt).
`fit` is also what the tune trials and the reward model's 1-epoch SFT init call.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from janus_align import paths
from janus_align.config import Params
from janus_align.models.checkpoint import load_tokenizer
from janus_align.train.chat_template import training_chat_template
from janus_align.train.datasets import SplitRows, load_split, to_datasets
from janus_align.train.mlflow_logging import MlflowStepLogger, log_trainer_config
from janus_align.train.recipe import (
    RecipeSettings,
    is_main_process,
    load_model,
    peft_config,
    read_best_params,
    require_checkpoint,
    resolve,
    train_and_save,
    train_record,
    training_args,
    write_train_record,
)
from janus_align.train.stage import run_training_stage

Variant = Literal["sft", "sft_small"]


def build_trainer(
    params: Params,
    settings: RecipeSettings,
    split: SplitRows,
    start_from: Path,
    output_dir: str | Path,
    callbacks: Iterable[Any] = (),
    metric_prefix: str = "",
) -> tuple[Any, Any, Any]:
    """(SFTTrainer, tokenizer, the tokenizer's own chat template) for one SFT run."""
    from trl import SFTConfig, SFTTrainer

    prompt_format = params.model.prompt_format
    tokenizer = load_tokenizer(start_from, padding_side="right")
    own_template = tokenizer.chat_template
    template = training_chat_template(tokenizer) if prompt_format == "chat_template" else None
    if template is not None:
        tokenizer.chat_template = template
    train_set, eval_set = to_datasets(split, "sft", tokenizer, prompt_format, messages_format=template is not None)
    config = SFTConfig(
        **training_args(settings, params.seed, output_dir, eval_set is not None),
        max_length=settings.max_length,
        packing=settings.common.packing,
        assistant_only_loss=template is not None,
    )
    trainer = SFTTrainer(
        model=load_model(start_from),
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config(settings),
        callbacks=[MlflowStepLogger(metric_prefix), *callbacks],
    )
    log_trainer_config(metric_prefix.rstrip("/") or settings.name, config, settings.as_dict())
    return trainer, tokenizer, own_template


def fit(
    params: Params,
    settings: RecipeSettings,
    split: SplitRows,
    out: Path | None,
    start_from: Path = paths.BASE_MODEL,
    callbacks: Iterable[Any] = (),
    metric_prefix: str = "",
) -> dict[str, Any]:
    """Train one SFT model; save it at `out` (None: keep nothing, as tune trials do). Returns metrics."""
    require_checkpoint(start_from, "prepare_model")
    with tempfile.TemporaryDirectory(prefix="janus-sft-") as tmp:
        trainer, tokenizer, own_template = build_trainer(
            params, settings, split, start_from, tmp, callbacks, metric_prefix
        )
        return train_and_save(trainer, tokenizer, own_template, params, out, start_from)


def train(params: Params, variant: Variant = "sft") -> dict[str, Any]:
    """Train the SFT model of `variant` with the tuned hyperparameters; save it and its record."""
    tuned = read_best_params()
    settings = resolve(params, variant, tuned)
    split = load_split(variant, params.train.common.eval_fraction, params.seed)
    out = paths.model_dir(variant)
    metrics = fit(params, settings, split, out)
    if is_main_process():
        write_train_record(
            out, train_record(params, variant, settings, metrics, paths.BASE_MODEL, split) | {"tuned_params": tuned}
        )
    return metrics


def run(params: Params, variant: Variant = "sft") -> Path:
    return run_training_stage(params, f"train_{variant}", variant, [variant], lambda p: train(p, variant))
