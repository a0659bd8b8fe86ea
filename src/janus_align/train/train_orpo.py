"""Stage `train_orpo` (Janus+ORPO): ORPO on the ORPO split, from the base model (no SFT first).

ORPO lives in `trl.experimental.orpo` in TRL 1.x and still tokenizes text rows itself, so the
rows are rendered here with the project's prompt format (each answer ends with EOS: given
conversational rows it would keep the template's newline after the end-of-turn token and then
append a second EOS). It also prepends the tokenizer's BOS whenever the prompt lacks one, even
for a format whose inference encoding has none; `orpo_trainer_class` drops that extra token so
training sees exactly the tokens inference sends. `train.orpo.beta` is the paper's `orpo_alpha`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from transformers import PreTrainedTokenizerBase

from janus_align import paths
from janus_align.config import Params
from janus_align.models.checkpoint import load_tokenizer
from janus_align.models.prompt_format import PromptFormat, encode_prompt
from janus_align.train.checkpoints import load_model, require_checkpoint
from janus_align.train.datasets import to_datasets
from janus_align.train.run_recipe import BuiltTrainer, TrainerJob, train_recipe
from janus_align.train.stage import run_training_stage
from janus_align.train.trl_arguments import peft_config

TOKEN_COLUMNS = (
    "prompt_input_ids",
    "prompt_attention_mask",
    "chosen_input_ids",
    "chosen_attention_mask",
    "chosen_labels",
    "rejected_input_ids",
    "rejected_attention_mask",
    "rejected_labels",
)


def orpo_trainer_class(prompt_format: PromptFormat) -> type:
    """ORPOTrainer whose rows start with BOS only when the inference encoding of the prompt does."""
    from trl.experimental.orpo import ORPOTrainer

    class BosFaithfulORPOTrainer(ORPOTrainer):
        def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
            batch = super().tokenize_row(feature, model)
            tokenizer = cast(PreTrainedTokenizerBase, self.processing_class)  # ORPO takes text rows
            bos = tokenizer.bos_token_id
            expected = encode_prompt(tokenizer, feature["prompt"], prompt_format)
            if bos is not None and batch["prompt_input_ids"][:1] == [bos] and expected[:1] != [bos]:
                for column in TOKEN_COLUMNS:
                    batch[column] = batch[column][1:]
            return batch

    return BosFaithfulORPOTrainer


def build_trainer(job: TrainerJob) -> BuiltTrainer:
    """The ORPOTrainer for one ORPO run."""
    params, settings, split, start_from = job.params, job.settings, job.split, job.start_from
    from trl.experimental.orpo import ORPOConfig

    prompt_format = params.model.prompt_format
    tokenizer = load_tokenizer(start_from, padding_side="right")
    train_set, eval_set = to_datasets(split, "preference", tokenizer, prompt_format, as_text=True)
    config = ORPOConfig(
        **job.training_args(eval_set is not None),
        max_length=settings.max_length,
        max_completion_length=settings.max_completion_length,
        beta=settings.beta,
        remove_unused_columns=False,  # its collator needs the tokenized columns it adds
    )
    trainer = orpo_trainer_class(prompt_format)(
        model=load_model(start_from),
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config(settings),
        callbacks=list(job.callbacks),
    )
    return BuiltTrainer(trainer, tokenizer, tokenizer.chat_template)


def train(params: Params) -> dict[str, Any]:
    return train_recipe(params, "orpo", build_trainer, require_checkpoint(paths.BASE_MODEL, "prepare_model"))


def run(params: Params) -> Path:
    return run_training_stage(params, "train_orpo", "orpo", ["orpo"], train)
