"""Backend for any OpenAI-compatible server: OpenAI, vLLM, llama.cpp server, Ollama.

Concurrency is bounded with an asyncio semaphore. Retries are the openai SDK's own: it
retries 408/409/429/5xx, connection errors and timeouts with exponential backoff and jitter,
and honours `Retry-After`/`retry-after-ms` (so no hand-written retry loop here). The API key
comes from the environment variable named in params (never from params itself).

Structured output asks for OpenAI's `response_format` json_schema form; a server that rejects
it (400/422, as llama-cpp-python does) is asked in the older json_object-with-schema form. The
engine parses and validates either way; the stage that asked decides whether to ask again.

A `response_regex` is not sent: the OpenAI API has no regex constraint, and each server that
has one names it its own way (vLLM's `structured_outputs`, llama.cpp's GBNF `grammar`, which
LlamaServerBackend uses); OpenAI itself rejects unknown fields. The stage that asked checks
the text itself, so an unconstrained answer costs at most an ask with a new seed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import openai

from janus_align.config.schema import OpenAISettings
from janus_align.llm.api_keys import api_key, server_url
from janus_align.llm.types import ChatRequest, ChatResult, ResultCallback


class BrokenResponseBodyError(ValueError):
    """A server answered a request with a body that cannot be read (one request's failure)."""


def response_format(schema: dict[str, Any], style: str = "json_schema") -> dict[str, Any]:
    """OpenAI's structured-output field; `json_object` is the older form llama-cpp-python takes."""
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": False}}


def parse_completion(data: Any, latency_s: float) -> ChatResult:
    """Text and token usage of a chat-completions response body (an error result if it has none)."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices[0], dict):
        shown = repr(data)[:200]
        return ChatResult("", latency_s=latency_s, error=f"response has no choices: {shown}")
    message = choices[0].get("message") or {}
    usage = data.get("usage") or {}
    return ChatResult(
        message.get("content") or "",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency_s,
    )


def _rejected_json_schema(error: Exception | None, body: dict[str, Any]) -> bool:
    rejected = isinstance(error, (openai.BadRequestError, openai.UnprocessableEntityError))
    return rejected and body.get("response_format", {}).get("type") == "json_schema"


class OpenAIBackend:
    def __init__(self, config: OpenAISettings, model: str | None = None):
        self.config = config
        self.model = model or config.model
        self._api_key = api_key(config, self.model)
        self.base_url = server_url(config)
        self.model_id = f"openai:{self.base_url}:{self.model}"
        # Switches to json_object the first time the server rejects a json_schema request.
        self._schema_style = "json_schema"

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of one chat-completions call."""
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": request.seed,
        }
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty  # vLLM / llama.cpp extension
        if request.response_schema is not None:
            body["response_format"] = response_format(request.response_schema, self._schema_style)
        return body

    async def _post(self, client: openai.AsyncOpenAI, body: dict[str, Any]) -> tuple[Any, Exception | None]:
        try:
            # `client.post` (the SDK's documented call for any endpoint) keeps its retries,
            # Retry-After, timeouts and auth, but skips the typed `create` path's params
            # transform and response models: half the CPU per request, which is what caps
            # requests/s at high concurrency on a small machine.
            return await client.post("/chat/completions", body=body, cast_to=dict), None
        except openai.OpenAIError as exc:
            return None, exc
        except ValueError as exc:
            # A 200 whose body is not JSON (a proxy's error page, a body cut short): the SDK's
            # `response.json()` raises JSONDecodeError, which is no OpenAIError. It fails this
            # request alone; raised, it would end `gather` and fail every request of the batch.
            return None, BrokenResponseBodyError(f"the server answered 200 with a body that is not JSON ({exc})")

    async def _one(self, client: openai.AsyncOpenAI, gate: asyncio.Semaphore, request: ChatRequest) -> ChatResult:
        body = self._body(request)
        async with gate:
            started = time.perf_counter()
            data, error = await self._post(client, body)
            if _rejected_json_schema(error, body):
                # A server without OpenAI's json_schema form (llama-cpp-python answers 422):
                # ask in the older json_object form, and keep to it once that works.
                fallback = {**body, "response_format": response_format(request.response_schema or {}, "json_object")}
                data, fallback_error = await self._post(client, fallback)
                if fallback_error is None:
                    self._schema_style, error = "json_object", None
            latency = time.perf_counter() - started
        if error is not None:
            return ChatResult("", latency_s=latency, error=f"{type(error).__name__}: {error}")
        return parse_completion(data, latency)

    async def _run(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        gate = asyncio.Semaphore(self.config.max_concurrency)
        client_settings = self.config
        async with openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=client_settings.max_retries,
            timeout=client_settings.timeout_s,
        ) as client:

            async def run_one(i: int) -> None:
                on_result(i, await self._one(client, gate, requests[i]))

            await asyncio.gather(*(run_one(i) for i in range(len(requests))))

    def generate(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            _run_loop(self._run(requests, on_result))
            return
        # Called from inside an event loop (a notebook): run ours on a worker thread.
        worker = threading.Thread(target=lambda: _run_loop(self._run(requests, on_result)))
        worker.start()
        worker.join()

    def close(self) -> None:
        pass


def _run_loop(coroutine: Any) -> None:
    """Run on uvloop: at 32 requests in flight the client's own CPU per request is what keeps
    throughput under the ideal on 2 cores, and libuv's loop costs less of it than asyncio's."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coroutine)
