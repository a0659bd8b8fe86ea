"""The checkpoint a training run starts from, and the one it leaves: LoRA merged, in
`model.save_dtype`, with the tokenizer's own chat template and the adapter beside it.

The evaluation stages load a trained model like the base checkpoint (AutoModelForCausalLM;
the reward model with AutoModelForSequenceClassification), so what is saved is a plain
checkpoint whatever the training used (LoRA, DeepSpeed ZeRO-3, FSDP).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from janus_align.config import Params
from janus_align.errors import JanusError

ModelKind = Literal["causal", "reward"]


def require_checkpoint(path: Path, stage_hint: str) -> Path:
    """`path` when it holds a checkpoint, else an error naming the stage that writes it."""
    if not (path / "config.json").is_file():
        raise JanusError(f"{path}: no checkpoint there (run `janus {stage_hint}` first)")
    return path


def load_model(path: Path, kind: ModelKind = "causal", pad_token_id: int | None = None) -> Any:
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
    kind: ModelKind = "causal",
) -> Path | None:
    """Save the trained model at `out` as a plain checkpoint (LoRA merged) plus `out/adapter/`.

    `chat_template` is the tokenizer's own template, restored so inference renders what it
    always did. Under DeepSpeed/FSDP the sharded weights are first gathered with
    `trainer.save_model`, then merged on rank 0. Returns `out` on the process that wrote it,
    None on the others.
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


def _reload_gathered(staging: Path, kind: ModelKind, source_checkpoint: Path) -> Any:
    """The gathered (full) weights of a distributed run, as a model object on rank 0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM
    if (staging / "adapter_config.json").is_file():
        from peft import PeftModel

        base = auto.from_pretrained(str(source_checkpoint), dtype=torch.float32)
        return PeftModel.from_pretrained(base, str(staging))
    return auto.from_pretrained(str(staging), dtype=torch.float32)
