"""Load a plain Hugging Face checkpoint directory for inference or training, on its device."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from janus_align.errors import JanusError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEVICES = ("auto", "cpu", "cuda")


def load_tokenizer(path: str | Path, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token (EOS when the model has none) and the given padding side."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def resolve_device(device: str) -> str:
    """`auto` is `cuda` when a GPU is visible, else `cpu`; asking for `cuda` without one is an error."""
    if device not in DEVICES:
        raise JanusError(f"device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise JanusError(
            "device: cuda, but torch sees no GPU (torch.cuda.is_available() is False; is this torch a CUDA "
            f"build? torch {torch.__version__}); set device: auto or cpu"
        )
    return device


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """`auto` is bfloat16 on a GPU that computes it (every CUDA GPU since Ampere); on the CPU,
    bfloat16 where it computes it natively (AVX512-BF16 or AMX), else float32.

    Without native support bf16 matrix products are emulated: on the project's AVX2 CPU,
    batched generation in bf16 ran at a third of the fp32 rate (bf16 wins only at batch 1).
    An explicit float32 or bfloat16 is kept on every device.
    """
    if dtype != "auto":
        return dtype
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    native = any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return "bfloat16" if native else "float32"


def load_causal_lm(path: str | Path, dtype: str = "float32", device: str = "cpu") -> PreTrainedModel:
    """A checkpoint in `dtype` (float32, bfloat16 or auto) on `device` (cpu, cuda or auto), in eval mode."""
    where = resolve_device(device)
    # On a GPU the weights load straight into its memory (device_map), not through a CPU copy.
    placement = {} if where == "cpu" else {"device_map": where}
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[resolve_dtype(dtype, where)], **placement)
    model.eval()
    return model
