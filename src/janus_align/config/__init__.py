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
    VLLMSettings,
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
    "VLLMSettings",
    "load_params",
]
