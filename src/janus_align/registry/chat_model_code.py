"""The models-from-code entry MLflow runs when it loads a logged Janus chat model.

Logging this file instead of a pickled object keeps the logged model free of cloudpickle: the
class is imported from the `janus_align` code logged beside it (`code_paths`).

A served model (`mlflow models serve`, one uvicorn worker per core by default) runs in a process
that never went through the `janus` CLI, which sets OMP_WAIT_POLICY=PASSIVE. Without it libgomp
lets idle OpenMP threads spin, and beside a second worker or any busy process each parallel
region waits on a preempted spinner: a 48-token request took several times as long (BENCHMARKS.md,
"Serving the champion"). The OpenMP runtime reads the setting once, when torch loads it, so it is
set here, before anything imports torch (a caller's own setting wins).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import mlflow  # noqa: E402 - after the OpenMP setting, on purpose

from janus_align.registry.chat_model import JanusChatModel  # noqa: E402

mlflow.models.set_model(JanusChatModel())
