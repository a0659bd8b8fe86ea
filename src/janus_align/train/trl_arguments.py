"""The arguments every TRL trainer config takes, and the LoRA adapter config, from a recipe's settings.

What one method adds (DPO's beta, ORPO's completion length, SFT's packing) stays in its
builder (train_<method>.py); what they all share is built here once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from janus_align.llm.progress import is_terminal
from janus_align.train.settings import RecipeSettings


def training_args(settings: RecipeSettings, seed: int, output_dir: str | Path, has_eval: bool) -> dict[str, Any]:
    """Keyword arguments every TRL config takes (SFTConfig, DPOConfig, ORPOConfig, RewardConfig).

    TRL configs default to bf16=True; with `use_cpu` that is bf16 autocast on CPU (faster there,
    STACK.md section 3). Metrics reach MLflow through `MlflowStepLogger`, not `report_to`, so a
    stage that trains twice (the RM stage's SFT init, then the RM) logs into one run without
    clashing parameter values.
    """
    common = settings.common
    evaluate_during = has_eval and common.eval_steps > 0
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": common.per_device_batch_size,
        "per_device_eval_batch_size": common.per_device_batch_size,
        "gradient_accumulation_steps": common.gradient_accumulation_steps,
        "learning_rate": settings.learning_rate,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "lr_scheduler_type": common.lr_scheduler,
        "warmup_steps": settings.warmup_steps,
        "weight_decay": common.weight_decay,
        "bf16": common.bf16,
        "use_cpu": common.use_cpu,
        "gradient_checkpointing": common.gradient_checkpointing,
        "logging_steps": common.logging_steps,
        "eval_strategy": "steps" if evaluate_during else "no",
        "save_strategy": "no",
        "report_to": "none",
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
        # Off a terminal the step logs are printed as lines: the nested train/eval bars would
        # fill a log file with carriage returns and cursor moves.
        "disable_tqdm": not is_terminal(sys.stderr),
    }
    if evaluate_during:
        kwargs["eval_steps"] = common.eval_steps
    if common.gradient_checkpointing:
        # Reentrant checkpointing breaks gradients through frozen (LoRA) base weights.
        kwargs["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    return kwargs


def peft_config(settings: RecipeSettings, task_type: str = "CAUSAL_LM") -> Any:
    """A peft LoraConfig when train.common.lora.enabled, else None (full fine-tuning)."""
    if not settings.lora.enabled:
        return None
    from peft import LoraConfig

    lora = settings.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )
