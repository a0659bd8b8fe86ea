"""Backend for any OpenAI-compatible server: OpenAI, vLLM, llama.cpp server, Ollama.

Concurrency is bounded with an asyncio semaphore. Retries are the openai SDK's own: it
retries 408/409/429/5xx, connection errors and timeouts with exponential backoff and jitter,
and honours `Retry-After`/`retry-after-ms` (so no hand-written retry loop here). The API key
comes from the environment variable named in params (never from params itself).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import openai

from janus_align.config.schema import LLMConfig
from janus_align.llm.types import ChatRequest, ChatResult, ResultCallback

# Local servers (llama.cpp, vLLM, Ollama) accept any key; OpenAI itself needs a real one.
_PLACEHOLDER_KEY = "not-needed-for-local-servers"


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": False}}


class OpenAIBackend:
    def __init__(self, config: LLMConfig, model: str | None = None):
        self.config = config
        self.model = model or config.model
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            if config.base_url is None:
                raise RuntimeError(
                    f"teacher/judge backend openai needs the API key in ${config.api_key_env} "
                    "(or set base_url to a local OpenAI-compatible server)"
                )
            api_key = _PLACEHOLDER_KEY
        self._client_args = dict(
            api_key=api_key, base_url=config.base_url, max_retries=config.max_retries, timeout=config.timeout_s
        )
        self.model_id = f"openai:{config.base_url or 'api.openai.com'}:{self.model}"

    async def _one(self, client: openai.AsyncOpenAI, gate: asyncio.Semaphore, request: ChatRequest) -> ChatResult:
        sampling = request.sampling
        kwargs: dict[str, Any] = dict(
            model=self.model,
            messages=list(request.messages),
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=request.seed,
        )
        if sampling.repetition_penalty != 1.0:
            kwargs["extra_body"] = {"repetition_penalty": sampling.repetition_penalty}  # vLLM / llama.cpp
        if request.response_schema is not None:
            kwargs["response_format"] = response_format(request.response_schema)
        async with gate:
            started = time.perf_counter()
            try:
                completion = await client.chat.completions.create(**kwargs)
            except openai.OpenAIError as exc:
                return ChatResult("", latency_s=time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
            latency = time.perf_counter() - started
        choice = completion.choices[0] if completion.choices else None
        text = (choice.message.content or "") if choice else ""
        usage = completion.usage
        return ChatResult(
            text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=latency,
            error=None if choice else "empty choices in response",
        )

    async def _run(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        gate = asyncio.Semaphore(self.config.max_concurrency)
        async with openai.AsyncOpenAI(**self._client_args) as client:

            async def run_one(i: int) -> None:
                on_result(i, await self._one(client, gate, requests[i]))

            await asyncio.gather(*(run_one(i) for i in range(len(requests))))

    def generate(self, requests: list[ChatRequest], on_result: ResultCallback) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._run(requests, on_result))
            return
        # Called from inside an event loop (a notebook): run ours on a worker thread.
        worker = threading.Thread(target=lambda: asyncio.run(self._run(requests, on_result)))
        worker.start()
        worker.join()

    def close(self) -> None:
        pass
