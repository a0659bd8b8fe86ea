"""`janus chat`: answer one prompt under a system message, with a registered model or a checkpoint.

    janus chat --model models:/janus@champion --system "You are a terse pirate." "Where is the gold?"
    janus chat --model artifacts/models/dpo "What is DVC?"

A `models:/`/`runs:/` URI loads the logged pyfunc from the MLflow store of params.yaml (or
MLFLOW_TRACKING_URI); a directory is wrapped in the same JanusChatModel, with the prompt format
it was trained with (its janus_train.json) or params' `model.prompt_format`, and the generate
stage's dtype and batch size (registry/chat_model.py `serving_config`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from janus_align.config import Params, load_params
from janus_align.errors import JanusError

URI_SCHEMES = ("models:/", "runs:/", "file:", "mlflow-artifacts:")


def _params(path: str) -> Params:
    return load_params(path) if Path(path).is_file() else Params()


class CheckpointChat:
    """A checkpoint directory behind the loaded-pyfunc interface (`predict(data, params=)`)."""

    def __init__(self, path: Path, prompt_format: str, params: Params):
        from janus_align.registry.chat_model import JanusChatModel

        self.model = JanusChatModel.from_checkpoint(path, prompt_format, params)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> list[str]:
        return self.model.predict(None, data, params)


def open_chat_model(ref: str, params: Params) -> Any:
    """Something with `.predict(DataFrame, params=)`: a loaded pyfunc, or a checkpoint wrapped alike."""
    if Path(ref).is_dir():
        from janus_align.models.train_record import find_train_record

        if not (Path(ref) / "config.json").is_file():
            raise JanusError(f"{ref}: not a checkpoint directory (no config.json)")
        record = find_train_record(ref)  # none: an untrained checkpoint (the base), params' format
        return CheckpointChat(Path(ref), record.prompt_format if record else params.model.prompt_format, params)
    if not ref.startswith(URI_SCHEMES):
        raise JanusError(
            f"--model {ref!r}: neither a checkpoint directory nor an MLflow model URI (models:/NAME@ALIAS)"
        )
    import mlflow
    from mlflow.exceptions import MlflowException

    from janus_align.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(params))
    try:
        return mlflow.pyfunc.load_model(ref)
    except MlflowException as exc:
        raise JanusError(f"--model {ref}: {exc.message.splitlines()[0]} (has `janus register` run?)") from None


def answer(model: Any, prompt: str, system: str | None = None, max_new_tokens: int = 128) -> str:
    """The model's answer to `prompt` under `system` (greedy)."""
    import pandas as pd

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return model.predict(pd.DataFrame({"messages": [messages]}), params={"max_new_tokens": max_new_tokens})[0]


def main(args: argparse.Namespace) -> None:
    if not args.prompt.strip():
        raise JanusError("the prompt is empty")
    model = open_chat_model(args.model, _params(args.params))
    print(answer(model, args.prompt, args.system, args.max_new_tokens))
