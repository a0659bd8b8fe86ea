"""params.yaml as typed, validated objects."""

from janus_align.config.load import ConfigError, load_params
from janus_align.config.schema import (
    LlamaCppSettings,
    LLMSettings,
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
    "OpenAISettings",
    "Params",
    "Prices",
    "Sampling",
    "TeacherSettings",
    "TransformersSettings",
    "VLLMSettings",
    "load_params",
]
