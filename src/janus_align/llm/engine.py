"""The one interface every stage uses to call a model: batches in, results out, cached.

    engine = open_engine(params.teacher)
    results = engine.complete([ChatRequest.of("2+2?", sampling=Sampling())], desc="answers")

Completed requests come from the request cache; the rest go to the backend, and each answer
is committed to the cache the moment it arrives. Several processes sharing one cache send each
request once: the engine claims what it sends and waits for what another process has claimed
(llm/cache.py). Structured requests (with a JSON schema) are parsed and validated here, the
same way for every backend; a malformed answer comes back with its error, and the caller's own
loop asks again with a new seed (`synth.teacher.ask_jobs`, the judge's verdict loop): one re-ask
loop per unit, so a unit costs at most max_reasks + 1 calls.

A spending cap (`max_cost_usd` of the teacher's or the judge's section) is kept here for every
backend: before each request is sent the backend asks the engine (`admit`), which adds that
request's worst case (its estimated prompt tokens and max_new_tokens at the section's prices) to
what is in flight and to what this payer has spent on this model through the cache, every run
included; the first request that would cross the cap is not sent, and once what was in flight
has come back `complete` raises SpendingCapReached, every answer so far kept in the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from janus_align import paths
from janus_align.config.schema import (
    FREE,
    LlamaCppSettings,
    LLMSettings,
    OpenAIBatchSettings,
    Prices,
    TransformersSettings,
    VLLMSettings,
    billed_prices,
)
from janus_align.errors import JanusError
from janus_align.llm.cache import RequestCache
from janus_align.llm.progress import RequestProgress
from janus_align.llm.types import Backend, ChatRequest, ChatResult

# How often a request another process is sending is looked for in the cache.
WAIT_POLL_S = 0.1


@dataclass
class Usage:
    """Running totals of what the engine spent (cached answers cost nothing again)."""

    requests: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    prices: Prices = FREE

    @property
    def cost_usd(self) -> float:
        return self.prices.cost_usd(self.prompt_tokens, self.completion_tokens)

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "cached": self.cached,
            "failed": self.failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "wall_s": round(self.wall_s, 3),
            "requests_per_s": round((self.requests - self.cached) / self.wall_s, 3) if self.wall_s else 0.0,
        }


class SpendingCapReached(JanusError):
    """The next request would take what a payer spent on a model past its `max_cost_usd`."""


class _Budget:
    """What may still be spent: the cap, less what was spent (cache) and what is in flight (worst case)."""

    def __init__(self, cap: float, spent: float, prices: Prices, requests: list[ChatRequest]):
        self.cap, self.spent, self.prices, self.requests = cap, spent, prices, requests
        self.in_flight: dict[int, float] = {}
        self.refused: tuple[int, float] | None = None  # (index, its worst case) of the request refused
        self._lock = threading.Lock()  # a backend may admit from one thread and report from another

    def worst_case(self, index: int) -> float:
        request = self.requests[index]
        return self.prices.cost_usd(request.estimated_prompt_tokens(), request.sampling.max_new_tokens)

    def admit(self, index: int) -> bool:
        with self._lock:
            if self.refused is not None:
                return False
            worst = self.worst_case(index)
            if self.spent + sum(self.in_flight.values()) + worst > self.cap:
                self.refused = (index, worst)
                return False
            self.in_flight[index] = worst
            return True

    def settle(self, index: int, cost: float) -> None:
        with self._lock:
            self.in_flight.pop(index, None)
            self.spent += cost


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    """The checked validator of one schema. `jsonschema.validate` checks the schema itself on
    every call, which cost 13 of every 14 ms a paper-profile preference answer took to accept."""
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def parse_json_answer(text: str, schema: dict[str, Any]) -> Any:
    """Parse a model's JSON answer and validate it; raise ValueError with a short reason."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        # strict=False: constrained decoding may emit raw control characters (newlines) inside strings.
        value = json.loads(body, strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at char {exc.pos}") from None
    # The error `jsonschema.validate` would raise (its best match), from a validator built once;
    # the key keeps the schema's key order, which decides between equally relevant errors.
    error = jsonschema.exceptions.best_match(_validator(json.dumps(schema)).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise ValueError(f"schema violation at {where}: {error.message}")
    return value


class LLMEngine:
    """Cached, batched chat completion over one backend."""

    def __init__(
        self,
        backend: Backend,
        cache: RequestCache,
        prices: Prices = FREE,
        max_cost_usd: float | None = None,
        payer: str | None = None,
    ):
        """`payer` names the params section that pays (`teacher`, `judge.llm`): the cache counts
        what it spent, and a cap's error names `<payer>.max_cost_usd`."""
        self.backend = backend
        self.cache = cache
        self.usage = Usage(prices=prices)
        self.max_cost_usd = max_cost_usd
        self.payer = payer

    def cost_of(self, result: ChatResult) -> float:
        """What one answer cost at this engine's prices (those it is billed at: the batch price on a batch backend)."""
        return self.usage.prices.cost_usd(result.prompt_tokens, result.completion_tokens)

    def spent_usd(self) -> float:
        """What this engine's payer has spent on its model through the cache, every run included."""
        return self.cache.spent_usd(self.model_id, self.payer)

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def complete(self, requests: list[ChatRequest], desc: str = "requests") -> list[ChatResult]:
        """Answer every request, from the cache where possible, in the order given.

        Structured requests (`response_schema` set) come back with `.parsed` filled in, or with
        `.error` saying why the answer is unusable (not JSON, off the schema). Nothing is re-asked
        here: the caller asks again with a new seed, which also covers what a correction turn
        could not (an answer cut at `max_new_tokens`: the same limit would cut the re-ask too,
        and with the cut answer in its context a small model repeats what ran away).
        """
        results = self._complete_raw(requests, desc)
        for request, result in zip(requests, results):
            if request.response_schema is None or not result.ok:
                continue
            try:
                result.parsed = parse_json_answer(result.text, request.response_schema)
            except ValueError as exc:
                result.error = str(exc)
        return results

    def reject(self, requests: list[ChatRequest], reason: str) -> int:
        """Take the cached answers of `requests` out of the look-ups (kept in the cache's `rejected`
        table with `reason`): the asker gave up on them, so the next run asks afresh instead of
        being served the same unusable answer. How many answers were taken out."""
        return self.cache.reject({r.cache_key(self.model_id) for r in requests}, reason)

    def _complete_raw(self, requests: list[ChatRequest], desc: str) -> list[ChatResult]:
        started = time.perf_counter()
        keys = [r.cache_key(self.model_id) for r in requests]
        hits = self.cache.get_many(keys)
        results: list[ChatResult | None] = [hits.get(k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        self.usage.requests += len(requests)
        if todo:
            progress = RequestProgress(len(todo), desc)
            try:
                # Send what this engine could claim, then wait for what another process is
                # sending; a key whose claim ends unanswered (failed, expired) is claimed again.
                while todo:
                    waiting = self._send_claimed(requests, keys, results, todo, progress)
                    todo = self._wait_for_others(keys, results, waiting, progress)
            finally:
                progress.close()
        self.usage.cached += sum(1 for r in results if r is not None and r.cached)
        self.usage.wall_s += time.perf_counter() - started
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"backend {self.model_id} returned no result for {len(missing)} request(s)")
        return results  # type: ignore[return-value]

    def _send_claimed(
        self,
        requests: list[ChatRequest],
        keys: list[str],
        results: list[ChatResult | None],
        todo: list[int],
        progress: RequestProgress,
    ) -> list[int]:
        """Claim the keys of `todo`, send those this engine got; return the ones held elsewhere."""
        mine = self.cache.claim({keys[i] for i in todo})
        claimed = [i for i in todo if keys[i] in mine]
        # Answered by another process between the look-up and the claim: nothing to send.
        self._take_answers(keys, results, claimed, progress)
        send = [i for i in claimed if results[i] is None]
        self.cache.release({keys[i] for i in claimed} - {keys[i] for i in send})
        if send:
            budget = None
            if self.max_cost_usd is not None:
                sent = [requests[i] for i in send]
                budget = _Budget(self.max_cost_usd, self.spent_usd(), self.usage.prices, sent)

            def on_result(j: int, result: ChatResult) -> None:
                i = send[j]
                cost = self.cost_of(result)
                if budget is not None:
                    budget.settle(j, cost)
                self.cache.put(keys[i], self.model_id, requests[i], result, cost, self.payer)
                self.cache.release([keys[i]])  # answered or failed: no one need wait for it now
                results[i] = result
                self.usage.prompt_tokens += result.prompt_tokens
                self.usage.completion_tokens += result.completion_tokens
                self.usage.failed += 0 if result.ok else 1
                progress.advance(result)

            try:
                with self.cache.keep_claims_alive():
                    if budget is None:  # a backend need not know of caps until one is set
                        self.backend.generate([requests[i] for i in send], on_result)
                    else:
                        self.backend.generate([requests[i] for i in send], on_result, budget.admit)
            finally:
                # What the backend raised on, or did not send (the cap): another run may send it.
                self.cache.release([keys[i] for i in send if results[i] is None])
            if budget is not None and budget.refused is not None:
                raise self._cap_reached(budget)
        return [i for i in todo if keys[i] not in mine]

    def _cap_reached(self, budget: _Budget) -> SpendingCapReached:
        key = f"{self.payer}.max_cost_usd" if self.payer else "max_cost_usd"
        _, worst = budget.refused or (0, 0.0)
        return SpendingCapReached(
            f"{key} = {budget.cap:.2f} USD reached: {budget.spent:.2f} USD spent on {self.model_id} (this run and "
            f"earlier ones, from the request cache) and the next request could cost up to {worst:.4f} USD more; "
            f"every answer so far is kept: raise {key} in params.yaml (or set it to null) and re-run to go on"
        )

    def _wait_for_others(
        self, keys: list[str], results: list[ChatResult | None], waiting: list[int], progress: RequestProgress
    ) -> list[int]:
        """Poll the cache for requests another live owner is sending; return those whose claim
        ended unanswered (that owner failed, died or froze), for this engine to claim and send."""
        while waiting:
            held = self.cache.held_elsewhere({keys[i] for i in waiting})
            self._take_answers(keys, results, waiting, progress)
            waiting = [i for i in waiting if results[i] is None]
            if any(keys[i] not in held for i in waiting):
                return waiting
            if waiting:
                time.sleep(WAIT_POLL_S)
        return []

    def _take_answers(
        self, keys: list[str], results: list[ChatResult | None], indices: list[int], progress: RequestProgress
    ) -> None:
        """Fill `results` at `indices` from answers other processes committed."""
        if not indices:
            return
        found = self.cache.get_many({keys[i] for i in indices})
        for i in indices:
            if keys[i] in found:
                results[i] = found[keys[i]]
                # Another process generated its tokens: this call's token rate leaves them out.
                progress.advance(dataclasses.replace(found[keys[i]], completion_tokens=0))

    def close(self) -> None:
        self.backend.close()
        self.cache.close()


def resolve_model_path(model: str) -> str:
    """`base` (or another pipeline model name) means its checkpoint under artifacts/models/."""
    candidate = paths.model_dir(model)
    if "/" not in model and candidate.is_dir():
        return str(candidate)
    return model


def open_engine(
    config: LLMSettings,
    cache_path: str | Path = paths.LLM_CACHE,
    model: str | None = None,
    prompt_format: str = "chat_template",
    payer: str | None = None,
) -> LLMEngine:
    """Build the engine a stage needs from its LLM section of params.yaml.

    `prompt_format` (transformers backend only) is how (system, user) become the prompt text:
    `chat_template` or the paper's literal `mistral_inst` (see models/prompt_format.py).
    `payer` is where `config` sits in params (`teacher`, `judge.llm`): its `max_cost_usd` caps
    what the requests of that section spend, counted per payer in the cache.
    """
    backend: Backend
    if isinstance(config, TransformersSettings):
        from janus_align.llm.transformers_backend import TransformersBackend

        backend = TransformersBackend(
            resolve_model_path(model or config.model),
            config,
            prompt_format,  # type: ignore[arg-type]
        )
    elif isinstance(config, LlamaCppSettings):
        from janus_align.llm.llama_server import LlamaServerBackend

        backend = LlamaServerBackend(config, model or config.model)
    elif isinstance(config, OpenAIBatchSettings):
        from janus_align.llm.openai_batch import OpenAIBatchBackend, ledger_path

        backend = OpenAIBatchBackend(config, ledger_path(cache_path), model=model)
    elif isinstance(config, VLLMSettings):
        from janus_align.llm.vllm_server import VLLMServerBackend

        backend = VLLMServerBackend(config, resolve_model_path(model or config.model))
    else:
        from janus_align.llm.openai_backend import OpenAIBackend

        backend = OpenAIBackend(config, model=model)
    cap = getattr(config, "max_cost_usd", None)  # the sections of paid backends have one
    # The batch backend's answers are billed at the batch price.
    return LLMEngine(backend, RequestCache(cache_path), billed_prices(config), cap, payer)


@contextlib.contextmanager
def opened_engine(config: LLMSettings, label: str, **options: Any) -> Iterator[LLMEngine]:
    """`open_engine(config, **options)` for the length of a `with` block, closed on leaving it.

    A checkpoint that is missing or a key that is not set (FileNotFoundError, RuntimeError) is a
    JanusError that starts with `label`, the setting the user fixes (`teacher (openai:gpt-4o)`).
    """
    try:
        engine = open_engine(config, **options)
    except (FileNotFoundError, RuntimeError) as exc:
        raise JanusError(f"{label}: {exc}") from None
    try:
        yield engine
    finally:
        engine.close()
