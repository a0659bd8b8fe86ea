"""A recipe's settings: `train.common` merged with `train.<method>`, and the tuned SFT values.

The recipe is params.yaml (alignment-handbook style): `train.common` holds what all methods
share, `train.<method>` what one method sets (a value set there wins), and the tune stage's
best parameters override the SFT values. Nothing a recipe should hold is hard-coded here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from janus_align import paths
from janus_align.config import Params
from janus_align.config.schema import LoraConfig as LoraSection
from janus_align.config.schema import TrainCommon
from janus_align.errors import JanusError
from janus_align.records import read_text

RecipeName = Literal["sft", "sft_small", "dpo", "orpo", "rm"]
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


def read_best_params(path: Path = paths.BEST_PARAMS) -> dict[str, Any]:
    """The tune stage's winning SFT hyperparameters, or {} when there is no tune output."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(read_text(path, JanusError))
    except json.JSONDecodeError as exc:
        raise JanusError(f"{path}:{exc.lineno}: broken JSON ({exc.msg}); re-run `janus tune`") from None
    best = data.get("params", data)
    return {key: best[key] for key in TUNABLE if key in best}
