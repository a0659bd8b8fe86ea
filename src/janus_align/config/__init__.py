"""params.yaml as typed, validated objects."""

from janus_align.config.load import ConfigError, load_params
from janus_align.config.schema import LLMConfig, Params, Sampling

__all__ = ["ConfigError", "LLMConfig", "Params", "Sampling", "load_params"]
