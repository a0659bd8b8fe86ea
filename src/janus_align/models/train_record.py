"""`janus_train.json`: what a training run writes beside its checkpoint, and what reads it back.

The record says how the checkpoint was made (recipe settings, metrics, the model it started
from, the prompt format it was trained with) and where MLflow holds it (run id, logged model
URI). Training writes it (`train/run_recipe.py`, then `train/stage.py` adds the run), the
register stage picks and tags its winner from it, and `janus chat` reads its prompt format.
It lives here, beside the checkpoint code, so that training and the registry import one typed
model instead of the registry reaching into training or reading the JSON its own way.

A record that is not valid JSON or misses a key is an error naming the file (and the key);
a checkpoint without one (the base model, an API model's name) is not a trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from janus_align.errors import JanusError
from janus_align.models.prompt_format import PromptFormat
from janus_align.records import read_json_object, write_json

TRAIN_RECORD = "janus_train.json"


class TrainRecordError(JanusError, ValueError):
    """A checkpoint's training record is missing or malformed; the message names the file."""


class TrainRecord(BaseModel):
    """One trained checkpoint's record (unknown keys are errors, so a renamed key is caught)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    kind: Literal["causal", "reward"] = "causal"
    recipe: dict[str, Any]  # train/settings.py RecipeSettings.as_dict(): the effective settings
    metrics: dict[str, int | float]
    prompt_format: PromptFormat
    start_from: str
    train_rows: int
    eval_rows: int
    tuned_params: dict[str, Any] | None = None  # SFT: the tune stage's winner it read ({}: none)
    init_metrics: dict[str, int | float] | None = None  # the reward model's 1-epoch SFT init
    # Added by the training stage once the run is over (train/stage.py).
    stage: str | None = None
    run_id: str | None = None
    train_wall_s: float | None = None
    model_uri: str | None = None


def record_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint) / TRAIN_RECORD


def write_train_record(checkpoint: str | Path, record: TrainRecord) -> Path:
    """Write `record` beside `checkpoint` (atomically); keys that are unset (None) are left out."""
    path = record_path(checkpoint)
    write_json(path, record.model_dump(mode="json", exclude_none=True))
    return path


def read_train_record(checkpoint: str | Path) -> TrainRecord:
    """The record beside `checkpoint`; TrainRecordError naming the file when missing or malformed."""
    path = record_path(checkpoint)
    data = read_json_object(
        path, f"no training record (is {Path(checkpoint)} a trained checkpoint?)", error=TrainRecordError
    )
    try:
        return TrainRecord.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(record)'}: {error['msg']}" for error in exc.errors()
        )
        raise TrainRecordError(f"{path}: {problems}") from None


def find_train_record(checkpoint: str | Path) -> TrainRecord | None:
    """The record beside `checkpoint`, or None when there is none (an untrained checkpoint)."""
    return read_train_record(checkpoint) if record_path(checkpoint).is_file() else None
