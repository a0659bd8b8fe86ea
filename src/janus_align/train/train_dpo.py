"""Stage `train_dpo` (Janus+DPO): DPO on the DPO split, starting from Janus* (artifacts/models/sft_small).

With LoRA the reference model is the same network with the adapter switched off (no second
copy in memory); with full fine-tuning TRL keeps a frozen copy. The prompt goes through the
project's prompt format; the loss covers the chosen and rejected answers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.config import Params
from janus_align.models.checkpoint import load_tokenizer
from janus_align.train.checkpoints import load_model, require_checkpoint
from janus_align.train.datasets import to_datasets
from janus_align.train.run_recipe import BuiltTrainer, TrainerJob, train_recipe
from janus_align.train.stage import run_training_stage
from janus_align.train.trl_arguments import peft_config

START_FROM = paths.model_dir("sft_small")


def build_trainer(job: TrainerJob) -> BuiltTrainer:
    """The DPOTrainer for one DPO run."""
    params, settings, split, start_from = job.params, job.settings, job.split, job.start_from
    from trl import DPOConfig, DPOTrainer

    tokenizer = load_tokenizer(start_from, padding_side="right")
    train_set, eval_set = to_datasets(split, "preference", tokenizer, params.model.prompt_format)
    config = DPOConfig(
        **job.training_args(eval_set is not None),
        max_length=settings.max_length,
        beta=settings.beta,
    )
    trainer = DPOTrainer(
        model=load_model(start_from),
        ref_model=None,
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config(settings),
        callbacks=list(job.callbacks),
    )
    return BuiltTrainer(trainer, tokenizer, tokenizer.chat_template)


def train(params: Params) -> dict[str, Any]:
    return train_recipe(params, "dpo", build_trainer, require_checkpoint(START_FROM, "train_sft_small"))


def run(params: Params) -> Path:
    return run_training_stage(params, "train_dpo", "dpo", ["dpo"], train)
