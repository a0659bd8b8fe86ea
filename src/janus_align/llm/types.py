"""The records that cross the engine boundary: what a stage asks and what it gets back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from janus_align.config.schema import Sampling

Message = dict[str, str]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion: messages (system first, if any), sampling, seed, optional schema."""

    messages: tuple[Message, ...]
    sampling: Sampling
    seed: int = 0
    response_schema: dict[str, Any] | None = None

    @classmethod
    def of(
        cls,
        user: str,
        *,
        system: str | None = None,
        sampling: Sampling,
        seed: int = 0,
        response_schema: dict[str, Any] | None = None,
    ) -> "ChatRequest":
        messages: list[Message] = []
        if system is not None:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": user})
        return cls(tuple(messages), sampling, seed, response_schema)

    def cache_key(self, model_id: str) -> str:
        """Hash of everything that changes the answer: model, messages, sampling, seed, schema.

        The parser is deliberately not part of it, so a parser fix re-reads cached answers.
        """
        payload = {
            "model": model_id,
            "messages": list(self.messages),
            "sampling": self.sampling.model_dump(),
            "seed": self.seed,
            "schema": self.response_schema,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class ChatResult:
    """A completed (or failed) request. `error` is set when no answer could be had."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    parsed: Any = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


ResultCallback = Callable[[int, ChatResult], None]


class Backend(Protocol):
    """A way to run chat completions. Calls `on_result(index, result)` as each one finishes."""

    model_id: str

    def generate(self, requests: list[ChatRequest], on_result: ResultCallback) -> None: ...

    def close(self) -> None: ...
