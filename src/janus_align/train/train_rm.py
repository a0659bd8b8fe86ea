"""Stage `train_rm` (Janus-RM): a reward model (one score per sequence) on the RM split.

As in the paper, it starts from a 1-epoch SFT of the base model on the full SFT split. That
init is trained inside this stage (its loss curve is logged with the prefix `init_sft/`) into
artifacts/models/rm.init/ and deleted afterwards: nothing else reads it, and keeping it as a
stage of its own would store one more full checkpoint. The score is read at the last token
(Bradley-Terry loss), as OpenRLHF's value head did; the RM split's test file is the
held-out set. The saved model loads with AutoModelForSequenceClassification.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.config import Params
from janus_align.models.checkpoint import load_tokenizer
from janus_align.train import train_sft
from janus_align.train.checkpoints import load_model, require_checkpoint
from janus_align.train.datasets import load_split, to_datasets
from janus_align.train.run_recipe import BuiltTrainer, TrainerJob, fit, is_main_process, train_recipe
from janus_align.train.settings import resolve
from janus_align.train.stage import run_training_stage
from janus_align.train.trl_arguments import peft_config

INIT_DIR = paths.MODELS / "rm.init"


def train_init(params: Params) -> dict[str, Any]:
    """The 1-epoch SFT the reward model starts from (the paper's janus-7b-196k-epoch1), on the
    whole SFT split as in the paper: nothing is held out to evaluate a model that is deleted
    once the reward model is trained (its training curve is logged)."""
    settings = dataclasses.replace(resolve(params, "sft"), epochs=1.0)
    split = load_split("sft", 0.0, params.seed)
    return fit(params, settings, split, train_sft.build_trainer, paths.BASE_MODEL, INIT_DIR, metric_prefix="init_sft/")


def build_trainer(job: TrainerJob) -> BuiltTrainer:
    """The RewardTrainer for the reward model."""
    params, settings, split, start_from = job.params, job.settings, job.split, job.start_from
    from trl import RewardConfig, RewardTrainer

    tokenizer = load_tokenizer(start_from, padding_side="right")
    train_set, eval_set = to_datasets(split, "preference", tokenizer, params.model.prompt_format)
    config = RewardConfig(**job.training_args(eval_set is not None), max_length=settings.max_length)
    trainer = RewardTrainer(
        model=load_model(start_from, "reward", tokenizer.pad_token_id),
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config(settings, task_type="SEQ_CLS"),
        callbacks=list(job.callbacks),
    )
    return BuiltTrainer(trainer, tokenizer, tokenizer.chat_template)


def train(params: Params) -> dict[str, Any]:
    require_checkpoint(paths.BASE_MODEL, "prepare_model")
    init_metrics = train_init(params)
    record = {
        "init_metrics": init_metrics,
        "start_from": f"1-epoch SFT of {paths.BASE_MODEL} on the sft split (not kept)",
    }
    metrics = train_recipe(
        params, "rm", build_trainer, require_checkpoint(INIT_DIR, "train_rm"), "reward", record=record
    )
    if is_main_process():
        shutil.rmtree(INIT_DIR, ignore_errors=True)
    return metrics


def run(params: Params) -> Path:
    return run_training_stage(params, "train_rm", "rm", ["sft", "rm"], train, chat_model=False)
