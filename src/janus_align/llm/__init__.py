"""LLM engine: one interface for chat completion over a batch, cached, on any backend."""

from janus_align.llm.engine import LLMEngine, open_engine
from janus_align.llm.types import ChatRequest, ChatResult

__all__ = ["ChatRequest", "ChatResult", "LLMEngine", "open_engine"]
