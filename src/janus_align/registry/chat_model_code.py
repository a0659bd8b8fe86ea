"""The models-from-code entry MLflow runs when it loads a logged Janus chat model.

Logging this file instead of a pickled object keeps the logged model free of cloudpickle: the
class is imported from the `janus_align` code logged beside it (`code_paths`).
"""

import mlflow

from janus_align.registry.chat_model import JanusChatModel

mlflow.models.set_model(JanusChatModel())
