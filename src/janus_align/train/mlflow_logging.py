"""What a training run puts into its MLflow run: step curves, the data it read, its config.

The CLI opens the stage's run (tags, flattened params) before the stage starts, so everything
here logs into the active run and does nothing when there is none (a library call, a test).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from transformers import TrainerCallback

from janus_align.train.datasets import SplitRows, frame


def _active() -> bool:
    import mlflow

    return mlflow.active_run() is not None


class MlflowStepLogger(TrainerCallback):
    """Log every number the trainer logs (loss, eval_loss, rewards/..., learning_rate) per step.

    TRL's own `report_to="mlflow"` would also land in the active run, but it logs the trainer's
    ~170 arguments as run params, which clash when a stage trains twice (the reward model's
    SFT init, then the reward model) and drown the recipe's own params. `prefix` keeps two
    trainings of one run apart (`init_sft/loss`).
    """

    def __init__(self, prefix: str = ""):
        self.prefix = prefix

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not state.is_world_process_zero or not _active():
            return
        import mlflow

        metrics = {
            f"{self.prefix}{key}": float(value)
            for key, value in logs.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        }
        if metrics:
            mlflow.log_metrics(metrics, step=state.global_step)


def log_split(split: SplitRows) -> None:
    """Log the rows a run trains and evaluates on as MLflow dataset inputs (with digest and schema)."""
    if not _active():
        return
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    for context, rows in (("training", split.train), ("evaluation", split.eval)):
        if rows:
            with warnings.catch_warnings():
                # A local path matches two equivalent local source types; MLflow picks one and warns.
                warnings.simplefilter("ignore", UserWarning)
                dataset = from_pandas(frame(rows), source=str(split.directory), name=f"{split.name}-{context}")
            mlflow.log_input(dataset, context=context)


def log_trainer_config(name: str, config: Any, settings: dict[str, Any]) -> None:
    """The full trainer arguments as an artifact (not as params: see MlflowStepLogger), plus the recipe."""
    if not _active():
        return
    import mlflow

    mlflow.log_dict({"recipe": settings, "trainer": config.to_dict()}, f"{name}_trainer_config.json")
