"""Stages `train_sft` (Janus: SFT on the full split) and `train_sft_small` (Janus*: the small split).

Both start from the base checkpoint and read the tune stage's winning learning rate, epochs,
LoRA rank and warmup from artifacts/tune/best_params.json when it exists. The loss covers the
assistant's tokens only: conversational rows with a chat template that marks them
(`{% generation %}`, see chat_template.py), else prompt/completion rows (TRL masks the prompt).
`build_trainer` is also what the tune trials and the reward model's 1-epoch SFT init train with
(through `run_recipe.fit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from janus_align import paths
from janus_align.config import Params
from janus_align.models.checkpoint import load_tokenizer
from janus_align.train.chat_template import training_chat_template
from janus_align.train.checkpoints import load_model, require_checkpoint
from janus_align.train.datasets import to_datasets
from janus_align.train.run_recipe import BuiltTrainer, TrainerJob, train_recipe
from janus_align.train.settings import read_best_params
from janus_align.train.stage import run_training_stage
from janus_align.train.trl_arguments import peft_config

Variant = Literal["sft", "sft_small"]


def build_trainer(job: TrainerJob) -> BuiltTrainer:
    """The SFTTrainer for one SFT run; the tokenizer's own chat template is what gets saved."""
    params, settings, split, start_from = job.params, job.settings, job.split, job.start_from
    from trl import SFTConfig, SFTTrainer

    prompt_format = params.model.prompt_format
    tokenizer = load_tokenizer(start_from, padding_side="right")
    own_template = tokenizer.chat_template
    template = training_chat_template(tokenizer) if prompt_format == "chat_template" else None
    if template is not None:
        tokenizer.chat_template = template
    train_set, eval_set = to_datasets(split, "sft", tokenizer, prompt_format, messages_format=template is not None)
    config = SFTConfig(
        **job.training_args(eval_set is not None),
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
        callbacks=list(job.callbacks),
    )
    return BuiltTrainer(trainer, tokenizer, own_template)


def train(params: Params, variant: Variant = "sft") -> dict[str, Any]:
    """Train the SFT model of `variant` with the tuned hyperparameters; save it and its record."""
    start_from = require_checkpoint(paths.BASE_MODEL, "prepare_model")
    return train_recipe(params, variant, build_trainer, start_from, tuned=read_best_params())


def run(params: Params, variant: Variant = "sft") -> Path:
    return run_training_stage(params, f"train_{variant}", variant, [variant], lambda p: train(p, variant))
