"""The records that cross the engine boundary: what a stage asks and what it gets back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from janus_align.config.schema import Sampling
from janus_align.seeding import derive_seed

Message = dict[str, str]

# What a request's text is in tokens, where no tokenizer of the model is at hand (an API model):
# about 4 characters a token, plus the chat template's role markers around the messages. An
# estimate, not a bound (code and non-Latin text run denser).
CHARS_PER_TOKEN = 4.0
TEMPLATE_OVERHEAD_TOKENS = 12


def estimated_tokens(text: str) -> int:
    """About how many tokens `text` is as a prompt (see CHARS_PER_TOKEN)."""
    return int(len(text) / CHARS_PER_TOKEN) + TEMPLATE_OVERHEAD_TOKENS


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion: messages (system first, if any), sampling, seed, optional constraint.

    `response_schema` asks for JSON valid under a JSON schema; the engine parses and validates
    the answer for every backend (the caller asks again, with a new seed, when it is malformed).

    `response_regex` asks for an answer that matches a regular expression (xgrammar's regex
    syntax), such as `[^\n\r]+` for one line. It is a decoding constraint only, enforced where
    the backend can: the transformers backend masks every token the regex cannot extend (as for
    schemas; the end-of-sequence token only once the regex is satisfied); the llama_cpp backend
    sends a sequence of character classes as a GBNF `grammar` (`llama_server.regex_grammar`)
    and anything else unconstrained; the openai backend sends nothing (the OpenAI API has no regex constraint,
    and unknown fields are rejected by some servers). The engine does not check the answer
    against it: whoever asks keeps its own check of the text as the contract. An answer cut at
    `max_new_tokens` is a prefix of a match, not a match. At most one of the two may be set.
    """

    messages: tuple[Message, ...]
    sampling: Sampling
    seed: int = 0
    response_schema: dict[str, Any] | None = None
    response_regex: str | None = None

    def __post_init__(self) -> None:
        if self.response_schema is not None and self.response_regex is not None:
            raise ValueError("a ChatRequest takes response_schema or response_regex, not both")
        if self.response_regex == "":
            raise ValueError("response_regex is empty (use None for an unconstrained answer)")

    @classmethod
    def of(
        cls,
        user: str,
        *,
        system: str | None = None,
        sampling: Sampling,
        seed: int = 0,
        response_schema: dict[str, Any] | None = None,
        response_regex: str | None = None,
    ) -> ChatRequest:
        messages: list[Message] = []
        if system is not None:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": user})
        return cls(tuple(messages), sampling, seed, response_schema, response_regex)

    def _identity(self) -> dict[str, Any]:
        """Everything of the request that changes its answer (the model aside)."""
        payload: dict[str, Any] = {
            "messages": list(self.messages),
            "sampling": self.sampling.model_dump(),
            "seed": self.seed,
            # As text: the order of its properties is the order the grammar writes them in.
            "schema": None if self.response_schema is None else json.dumps(self.response_schema),
        }
        if self.response_regex is not None:
            payload["regex"] = self.response_regex
        return payload

    def cache_key(self, model_id: str) -> str:
        """Hash of everything that changes the answer: model, messages, sampling, seed, schema, regex.

        The parser is deliberately not part of it, so a parser fix re-reads cached answers.
        The regex enters only when set, so requests without one keep the keys they always had.
        """
        blob = json.dumps({"model": model_id, **self._identity()}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def estimated_prompt_tokens(self) -> int:
        """About how many prompt tokens this request is (`estimated_tokens` of its messages)."""
        return estimated_tokens("".join(m["content"] for m in self.messages))

    def stream_seed(self) -> int:
        """The 31-bit seed of this request's own random stream in a local decoding loop
        (llm/sampling.py): from the request alone, never from the batch it shares or the model,
        and distinct for two requests that differ only in their messages but share `seed`.

        >>> from janus_align.config import Sampling
        >>> hot = Sampling(max_new_tokens=8, temperature=1.0, top_p=0.9)
        >>> ChatRequest.of("a", sampling=hot).stream_seed() != ChatRequest.of("b", sampling=hot).stream_seed()
        True
        """
        return derive_seed(self.seed, json.dumps(self._identity(), sort_keys=True, ensure_ascii=False))


@dataclass
class ChatResult:
    """A completed (or failed) request. `error` is set when no answer could be had.

    `model` is the model id as the server returned it (the response's `model` field, such as a
    dated snapshot `gpt-4o-2024-08-06` for a request to `gpt-4o`); "" where the backend runs the
    model itself or the server does not say.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    parsed: Any = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    model: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


ResultCallback = Callable[[int, ChatResult], None]
# admit(index) -> whether the request at `index` may be sent now (the engine's spending cap).
Admit = Callable[[int], bool]


class Backend(Protocol):
    """A way to run chat completions. Calls `on_result(index, result)` as each one finishes.

    With `admit`, a backend that pays per request asks `admit(index)` right before it sends each
    one (a request it has not yet sent, so the engine can count what is in flight). A refused
    request is not sent; it gets no `on_result` or an error result (the engine takes either);
    once one is refused, every later one is too, and `generate` returns when what was sent has
    come back. A backend whose calls cost nothing (a
    local model) may ignore `admit`.
    """

    model_id: str

    def generate(self, requests: list[ChatRequest], on_result: ResultCallback, admit: Admit | None = None) -> None: ...

    def close(self) -> None: ...
