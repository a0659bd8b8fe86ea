"""A trained Janus checkpoint as an MLflow pyfunc model: chat messages in, text out.

Why a pyfunc and not the transformers flavour: the answer must be rendered with the project's
one prompt-format module (`chat_template` or the literal `[INST]` format the paper's models
read), and the transformers pipeline only knows the tokenizer's chat template. The pyfunc wraps
the same engine and backend the evaluation uses, so the registry serves exactly what was scored.

Input (signature): a column `messages`, each row a list of {role, content} (system first,
optional). Output: the answer text per row. Params: max_new_tokens, temperature (0 = greedy),
top_p, repetition_penalty, seed. `seed` -1 (the default) gives each sampled answer a fresh seed,
so sampling samples (two equal requests at temperature > 0 answer differently); a seed >= 0
reproduces an answer. Greedy answers (temperature 0) do not depend on it. The same words are in
the logged model's metadata (`params_doc`), next to its signature.

Where its settings come from (params.yaml, no key of its own): the model computes in
`generate.dtype` on `generate.device` and batches `generate.batch_size` rows, the settings the generate stage scores
a candidate with, recorded into the logged model's config when it is logged (`serving_config`),
so a served model runs as it was scored and a later params.yaml does not change a logged one.
The weights are stored in `mlflow.log_model_dtype` (bf16 halves them) and cast on load. The
request params' defaults (`DEFAULT_PARAMS`: greedy, 128 new tokens, seed -1) are the serving
API's contract, not a pipeline setting: each request may set them, and greedy by default makes
one question get one answer (`janus chat` from a checkpoint and from the registry alike).
`generate.sampling` is the bench's sampling, which a chat caller passes explicitly if wanted.

    model = mlflow.pyfunc.load_model("models:/janus@champion")
    model.predict(pd.DataFrame({"messages": [[{"role": "system", "content": "Be terse."},
                                              {"role": "user", "content": "What is DVC?"}]]}),
                  params={"max_new_tokens": 64})
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.pyfunc import PythonModel

import janus_align
from janus_align.config import Params
from janus_align.config.schema import Sampling, TransformersSettings

# MLflow warns, when the class below is defined, that predict() has no type hints; the explicit
# signature logged with the model is the contract (hints would make MLflow re-derive one).
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method.*", category=UserWarning)

CHECKPOINT_ARTIFACT = "checkpoint"
SERVING_KEYS = ("prompt_format", "dtype", "batch_size")  # what `serving_config` records
DEFAULT_PARAMS: dict[str, Any] = {
    "max_new_tokens": 128,
    "temperature": 0.0,
    "top_p": 1.0,
    "repetition_penalty": 1.0,
    "seed": -1,  # NEW_SEED: each sampled answer draws a fresh seed; >= 0 reproduces an answer
}
NEW_SEED = -1
# What the logged model needs at load time; pinned to this environment's versions so a served
# model never re-resolves torch (and so MLflow need not load the model to infer them).
REQUIREMENTS = (
    "mlflow",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "accelerate",
    "pydantic",
    "jsonschema",
    "tqdm",
    "PyYAML",
    "pandas",
    "numpy",
)


def chat_signature() -> Any:
    """The explicit signature: `messages` (array of {role, content}) in, a string out, sampling params."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

    message = Object([Property("role", "string"), Property("content", "string")])
    types = {int: "long", float: "double"}
    params = ParamSchema([ParamSpec(name, types[type(value)], value) for name, value in DEFAULT_PARAMS.items()])
    return ModelSignature(Schema([ColSpec(Array(message), "messages")]), Schema([ColSpec("string")]), params)


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):  # a JSON string, as some HTTP clients send it
        value = json.loads(value)
    if not isinstance(value, list) or not value:
        raise ValueError("each row needs `messages`: a non-empty list of {role, content}")
    messages = []
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ValueError(f"a message must be {{role, content}} with string content, got {message!r}")
        messages.append({"role": str(message.get("role", "user")), "content": message["content"]})
    return tuple(messages)


class JanusChatModel(PythonModel):
    """Answer chat messages with a checkpoint through the project's LLM engine (no disk cache)."""

    def load_context(self, context: Any) -> None:
        self._open(context.artifacts[CHECKPOINT_ARTIFACT], context.model_config or {})

    def _open(self, checkpoint: str | Path, config: dict[str, Any]) -> None:
        from janus_align.llm.cache import RequestCache
        from janus_align.llm.engine import LLMEngine
        from janus_align.llm.transformers_backend import TransformersBackend

        missing = [key for key in SERVING_KEYS if key not in config]
        if missing:
            raise ValueError(f"{checkpoint}: the chat model's config lacks {missing} (see serving_config)")
        # `device` came later than the other keys: a model logged before it runs where `auto` says.
        llm = TransformersSettings(
            dtype=config["dtype"], batch_size=int(config["batch_size"]), device=config.get("device", "auto")
        )
        backend = TransformersBackend(checkpoint, llm, config["prompt_format"])
        self.engine = LLMEngine(backend, RequestCache(":memory:"))

    @classmethod
    def from_checkpoint(cls, path: str | Path, prompt_format: str, params: Params) -> JanusChatModel:
        """The same model straight from a checkpoint directory (`janus chat --model DIR`)."""
        model = cls()
        model._open(path, serving_config(params, prompt_format))
        return model

    # No type hints here on purpose: MLflow reads them as a signature and warns that they are
    # not `list[...]`; the explicit signature logged with the model is the contract.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        """Answer each row's `messages`; returns one text per row."""
        from janus_align.llm.types import ChatRequest

        settings = {**DEFAULT_PARAMS, **(params or {})}
        sampling = Sampling(
            max_new_tokens=int(settings["max_new_tokens"]),
            temperature=float(settings["temperature"]),
            top_p=float(settings["top_p"]),
            repetition_penalty=float(settings["repetition_penalty"]),
        )
        if hasattr(model_input, "to_dict"):  # a DataFrame (what the signature enforcement hands over)
            rows = model_input["messages"].tolist()
        else:
            rows = [row["messages"] if isinstance(row, dict) else row for row in model_input]
        seed = int(settings["seed"])
        requests = [ChatRequest(_messages(row), sampling, _request_seed(seed)) for row in rows]
        results = self.engine.complete(requests, desc="chat")
        failed = [r.error for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"generation failed: {failed[0]}")
        return [r.text for r in results]


def _request_seed(seed: int) -> int:
    """`seed` as given, or a fresh one for NEW_SEED (the in-memory request cache then never
    hands a sampled answer to a second, identical request)."""
    return secrets.randbits(31) if seed == NEW_SEED else seed


PARAMS_DOC = {
    "max_new_tokens": "most tokens of the answer",
    "temperature": "0: greedy (the default); > 0: sampled",
    "top_p": "nucleus of the sampled tokens (1.0: all)",
    "repetition_penalty": "1.0: none",
    "seed": "-1 (default): a fresh seed per sampled answer; >= 0: the same request gives the same answer",
}


def requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def _saved_dtype(checkpoint: Path) -> str | None:
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    return config.get("dtype") or config.get("torch_dtype")


def _stage(checkpoint: Path, dtype: str, into: Path) -> Path:
    """The checkpoint's top-level files (not adapter/), in `dtype`, without copying when possible."""
    staged = into / "checkpoint"
    if _saved_dtype(checkpoint) == dtype:
        staged.mkdir()
        for file in checkpoint.iterdir():
            if file.is_file():
                try:
                    os.link(file, staged / file.name)  # same file system: no copy
                except OSError:
                    shutil.copy2(file, staged / file.name)
        return staged
    from janus_align.models.checkpoint import load_causal_lm, load_tokenizer

    load_causal_lm(checkpoint, dtype).save_pretrained(staged)
    load_tokenizer(checkpoint).save_pretrained(staged)
    return staged


def serving_config(params: Params, prompt_format: str) -> dict[str, Any]:
    """What the chat model runs with: the generate stage's dtype, device and batch size (module docstring)."""
    settings = params.generate
    return {
        "prompt_format": prompt_format,
        "dtype": settings.dtype,
        "device": settings.device,
        "batch_size": settings.batch_size,
    }


def log_chat_model(checkpoint: str | Path, prompt_format: str, params: Params, name: str = "model") -> str:
    """Log a checkpoint into the active run as a JanusChatModel; return its model URI.

    The weights are logged in `mlflow.log_model_dtype` (bf16 halves them) and only the merged
    checkpoint, not the adapter copy beside it; `serving_config` goes into the model's config.
    """
    checkpoint = Path(checkpoint)
    mlflow_config = params.mlflow
    package = Path(janus_align.__file__).parent
    with tempfile.TemporaryDirectory(dir=checkpoint.parent, prefix=".mlflow-stage-") as tmp, warnings.catch_warnings():
        # MLflow asks for predict() type hints and an input example; the explicit signature is the
        # contract, and an input example would make MLflow load the model and generate at log time.
        warnings.filterwarnings("ignore", message=".*(type hints|input example|input_example).*", category=UserWarning)
        staged = _stage(checkpoint, mlflow_config.log_model_dtype, Path(tmp))
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("chat_model_code.py")),
            artifacts={CHECKPOINT_ARTIFACT: str(staged)},
            model_config=serving_config(params, prompt_format),
            signature=chat_signature(),
            metadata={"params_doc": PARAMS_DOC},
            pip_requirements=requirements(),
            code_paths=[str(package)],
        )
    return info.model_uri
