"""params.yaml as typed, validated objects."""

from janus_align.config.load import ConfigError, load_params
from janus_align.config.schema import (
    LlamaCppSettings,
    LLMSettings,
    OpenAIBatchSettings,
    OpenAISettings,
    Params,
    Prices,
    Sampling,
    TeacherSettings,
    TransformersSettings,
)

__all__ = [
    "ConfigError",
    "LLMSettings",
    "LlamaCppSettings",
    "OpenAIBatchSettings",
    "OpenAISettings",
    "Params",
    "Prices",
    "Sampling",
    "TeacherSettings",
    "TransformersSettings",
    "load_params",
]
