"""What every recipe shares: its settings from params, the trainer arguments, LoRA, the model
it starts from, and how the trained model is saved.

The recipe is params.yaml (alignment-handbook style): `train.common` holds what all methods
share, `train.<method>` what one method sets (a value set there wins), and the tune stage's
best parameters override the SFT values. Nothing a recipe should hold is hard-coded here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from janus_align import paths
from janus_align.config import Params
from janus_align.config.schema import LoraConfig as LoraSection
from janus_align.config.schema import TrainCommon
from janus_align.errors import JanusError
from janus_align.records import write_json

RecipeName = Literal["sft", "sft_small", "dpo", "orpo", "rm"]
BEST_PARAMS = paths.TUNE / "best_params.json"
TRAIN_RECORD = "janus_train.json"  # written next to each trained checkpoint
TUNABLE = ("learning_rate", "epochs", "lora_r", "warmup_steps")


@dataclass(frozen=True)
class RecipeSettings:
    """The effective settings of one training run (train.common merged with train.<name>)."""

    name: str
    learning_rate: float
    epochs: float
    max_steps: int
    max_length: int
    warmup_steps: int
    beta: float
    max_completion_length: int | None
    lora: LoraSection
    common: TrainCommon

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "max_steps": self.max_steps,
            "max_length": self.max_length,
            "warmup_steps": self.warmup_steps,
            "beta": self.beta,
            "max_completion_length": self.max_completion_length,
            "lora": self.lora.model_dump() if self.lora.enabled else None,
        }


def resolve(params: Params, name: RecipeName, overrides: Mapping[str, Any] | None = None) -> RecipeSettings:
    """Merge train.common with train.<name>, then apply `overrides` (keys of TUNABLE).

    A LoRA rank override keeps the configured alpha/r ratio, so a tuned rank does not also
    change the adapter's scale (which would confound rank with learning rate).

    >>> resolve(params, "dpo").learning_rate  # doctest: +SKIP
    5e-05
    """
    common = params.train.common
    recipe = getattr(params.train, name)
    values: dict[str, Any] = {
        "learning_rate": recipe.learning_rate,
        "epochs": recipe.epochs,
        "warmup_steps": common.warmup_steps,
        "lora_r": common.lora.r,
    }
    unknown = set(overrides or {}) - set(TUNABLE)
    if unknown:
        raise JanusError(f"unknown tuned parameter(s) {sorted(unknown)}; tunable: {list(TUNABLE)}")
    values.update(overrides or {})
    rank = int(values["lora_r"])
    lora = common.lora.model_copy(update={"r": rank, "alpha": max(1, round(common.lora.alpha * rank / common.lora.r))})
    return RecipeSettings(
        name=name,
        learning_rate=float(values["learning_rate"]),
        epochs=float(values["epochs"]),
        max_steps=recipe.max_steps if recipe.max_steps is not None else common.max_steps,
        max_length=recipe.max_length or common.max_length,
        warmup_steps=int(values["warmup_steps"]),
        beta=recipe.beta,
        max_completion_length=recipe.max_completion_length,
        lora=lora,
        common=common,
    )


def read_best_params(path: Path = BEST_PARAMS) -> dict[str, Any]:
    """The tune stage's winning SFT hyperparameters, or {} when there is no tune output."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise JanusError(f"{path}:{exc.lineno}: broken JSON ({exc.msg}); re-run `janus tune`") from None
    best = data.get("params", data)
    return {key: best[key] for key in TUNABLE if key in best}


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


def require_checkpoint(path: Path, stage_hint: str) -> Path:
    if not (path / "config.json").is_file():
        raise JanusError(f"{path}: no checkpoint there (run `janus {stage_hint}` first)")
    return path


def load_model(path: Path, kind: Literal["causal", "reward"] = "causal", pad_token_id: int | None = None) -> Any:
    """The model to train from a checkpoint, in float32 master weights (bf16 is autocast).

    Load it after building the trainer config: under DeepSpeed ZeRO-3 the config must exist
    first so the weights are partitioned as they load. The reward model is a sequence
    classifier with one score; its pad token must be on the config so the score is read at
    the last real token of each padded sequence.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if kind == "reward":
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = pad_token_id
        return model
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


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


def _is_distributed(trainer: Any) -> bool:
    from accelerate.utils import DistributedType

    sharded = (DistributedType.DEEPSPEED, DistributedType.FSDP)
    return trainer.accelerator.num_processes > 1 or trainer.accelerator.state.distributed_type in sharded


def save_trained(
    trainer: Any,
    tokenizer: Any,
    out: Path,
    params: Params,
    start_from: Path,
    chat_template: Any,
    kind: Literal["causal", "reward"] = "causal",
) -> Path | None:
    """Save the trained model at `out` as a plain checkpoint (LoRA merged) plus `out/adapter/`.

    The evaluation stages load `out` like the base checkpoint (AutoModelForCausalLM; the reward
    model with AutoModelForSequenceClassification). `chat_template` is the tokenizer's own
    template, restored so inference renders what it always did. Under DeepSpeed/FSDP the
    sharded weights are first gathered with `trainer.save_model`, then merged on rank 0.
    Returns `out` on the process that wrote it, None on the others.
    """
    from janus_align.models.prepare_model import save_checkpoint

    tokenizer.chat_template = chat_template
    model = trainer.model
    staging = out.with_name(out.name + ".gathered")
    if _is_distributed(trainer):
        trainer.save_model(str(staging))
        trainer.accelerator.wait_for_everyone()
        if not trainer.accelerator.is_main_process:
            return None
        model = _reload_gathered(staging, kind, start_from)
    adapter_partial = out.with_name(out.name + ".adapter.partial")
    shutil.rmtree(adapter_partial, ignore_errors=True)
    if hasattr(model, "merge_and_unload"):  # a peft model: keep the adapter, ship merged weights
        model.save_pretrained(str(adapter_partial))
        tokenizer.save_pretrained(str(adapter_partial))
        model = model.merge_and_unload()
    diverged = [name for name, tensor in model.state_dict().items() if not tensor.isfinite().all()]
    if diverged:
        # A NaN model would only fail later, at generation, far from the cause. Seen when every
        # completion token was truncated away (prompt longer than max_length): 0/0 log-probs.
        raise JanusError(
            f"{out.name}: training diverged, non-finite weights in {diverged[:3]}; check the loss curve "
            "and that max_length leaves room for the completion after the prompt"
        )
    save_checkpoint(model, tokenizer, out, params.model.save_dtype, f"{out.name} trained from {start_from}")
    if adapter_partial.is_dir():
        adapter_partial.rename(out / "adapter")
    shutil.rmtree(staging, ignore_errors=True)
    return out


def _reload_gathered(staging: Path, kind: str, source_checkpoint: Path) -> Any:
    """The gathered (full) weights of a distributed run, as a model object on rank 0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM
    if (staging / "adapter_config.json").is_file():
        from peft import PeftModel

        base = auto.from_pretrained(str(source_checkpoint), dtype=torch.float32)
        return PeftModel.from_pretrained(base, str(staging))
    return auto.from_pretrained(str(staging), dtype=torch.float32)


def is_main_process() -> bool:
    """False in the accelerate workers other than rank 0 (they train but do not write files)."""
    return os.environ.get("RANK", "0") == "0"


def train_and_save(
    trainer: Any,
    tokenizer: Any,
    own_template: Any,
    params: Params,
    out: Path | None,
    start_from: Path,
    kind: Literal["causal", "reward"] = "causal",
) -> dict[str, Any]:
    """Train, take the final held-out loss, save the model at `out` (unless None); return metrics."""
    result = trainer.train()
    metrics: dict[str, Any] = {"train_loss": float(result.training_loss), "steps": int(result.global_step)}
    eval_loss = final_eval_loss(trainer)
    if eval_loss is not None:
        metrics["eval_loss"] = eval_loss
        last_eval = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), {})
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
    if out is not None:
        save_trained(trainer, tokenizer, out, params, start_from, own_template, kind)
    return metrics


TrainerBuilder = Callable[[Params, RecipeSettings, Any, Path, str], tuple[Any, Any]]


def train_recipe(
    params: Params,
    name: RecipeName,
    build_trainer: TrainerBuilder,
    start_from: Path,
    kind: Literal["causal", "reward"] = "causal",
    record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train recipe `name` on its split from `start_from`; save artifacts/models/<name>/ and its record.

    `build_trainer(params, settings, split, start_from, output_dir) -> (trainer, tokenizer)` is
    the one thing a recipe module supplies; `record` adds to (or overrides) the record's keys.
    """
    from janus_align.train.datasets import load_split

    settings = resolve(params, name)
    split = load_split(name, params.train.common.eval_fraction, params.seed)
    out = paths.model_dir(name)
    with tempfile.TemporaryDirectory(prefix=f"janus-{name}-") as tmp:
        trainer, tokenizer = build_trainer(params, settings, split, start_from, tmp)
        metrics = train_and_save(trainer, tokenizer, tokenizer.chat_template, params, out, start_from, kind)
    if is_main_process():
        write_train_record(out, train_record(params, name, settings, metrics, start_from, split) | dict(record or {}))
    return metrics


def train_record(
    params: Params, name: str, settings: RecipeSettings, metrics: Mapping[str, Any], start_from: Path, split: Any
) -> dict[str, Any]:
    """What `janus_train.json` holds for every recipe (the stage adds the MLflow run and model URI)."""
    return {
        "model": name,
        "recipe": settings.as_dict(),
        "metrics": dict(metrics),
        "prompt_format": params.model.prompt_format,
        "start_from": str(start_from),
        "train_rows": len(split.train),
        "eval_rows": len(split.eval),
    }


def write_train_record(out: Path, record: dict[str, Any]) -> None:
    """`janus_train.json` beside the checkpoint: recipe, metrics, and the MLflow run/model URI."""
    write_json(out / TRAIN_RECORD, record)


def read_train_record(out: Path) -> dict[str, Any]:
    path = out / TRAIN_RECORD
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
