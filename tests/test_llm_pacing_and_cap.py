"""The openai backend against servers that limit, misbehave and bill: pacing to the limits the
server announces, a 200 whose body is not JSON, the returned model id, and the spending cap.

The rate-limited server is the simulated OpenAI API (`janus_align.simulated_api`), a double of
the external service; the openai SDK, the backend, the engine and the cache run for real.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from janus_align.config import OpenAISettings, Sampling
from janus_align.config.schema import Prices
from janus_align.llm import ChatRequest, open_engine
from janus_align.llm.cache import RequestCache
from janus_align.llm.engine import LLMEngine, SpendingCapReached
from janus_align.llm.openai_backend import OpenAIBackend, Pacer, parse_duration
from janus_align.simulated_api import SimulatedAPI
from loopback_server import Fault, LoopbackServer

KEY_ENV = "JANUS_TEST_OPENAI_KEY"
SHORT = Sampling(max_new_tokens=16, temperature=0.7)
# 1 USD per 1k tokens either way: a request's cost is easy to predict.
PRICES = Prices(input_per_mtok=1000.0, output_per_mtok=1000.0)


def settings(base_url: str, **overrides) -> OpenAISettings:
    values = dict(
        model="gpt-4o", base_url=base_url, api_key_env=KEY_ENV, timeout_s=10.0, max_retries=5, max_concurrency=8
    )
    return OpenAISettings(**{**values, **overrides})


def requests(n: int, prefix: str = "question") -> list[ChatRequest]:
    return [ChatRequest.of(f"{prefix} {i}", sampling=SHORT, seed=i) for i in range(n)]


def drain(api: SimulatedAPI) -> None:
    """Empty the simulated account's request bucket, as a run already at its limit finds it."""
    api._sim.limiter.requests.level = 0.0  # the double's state: what a minute of full use leaves


# ------------------------------------------------------------------------------------------
# Pacing


def test_the_reset_header_durations_are_read_in_openais_format():
    assert [parse_duration(t) for t in ("1s", "6m0s", "20ms", "1m30.5s", "2", "", "never")] == [
        1.0,
        360.0,
        0.02,
        90.5,
        2.0,
        None,
        None,
    ]


def test_a_run_at_its_tiers_limit_is_paced_to_the_announced_rpm_with_few_429s(tmp_path):
    """At 300 RPM with the allowance spent, 30 requests go out at the refill rate (5/s): few
    429s (at most the first max_concurrency, sent before any header was read), none failed."""
    with SimulatedAPI(rpm=300, latency_median_s=0.02, seed=1) as api:
        drain(api)
        backend = OpenAIBackend(settings(api.base_url))
        engine = LLMEngine(backend, RequestCache(tmp_path / "llm.sqlite"))
        started = time.monotonic()
        results = engine.complete(requests(30))
        elapsed = time.monotonic() - started
        stats = api.stats()
    assert all(r.ok for r in results)
    assert backend.pacer is not None and backend.pacer.rpm == 300  # learned from the headers
    assert stats["ok"] == 30 and stats["rate_limited"] <= 8
    # 30 requests at 5/s from an empty bucket take about 6 s; never faster than the limit.
    assert 30 / elapsed <= 5.0 * 1.15


def test_rpm_from_params_overrides_the_headers_and_spreads_sends_evenly(tmp_path):
    with SimulatedAPI(latency_median_s=0.01, seed=2) as api:  # the server announces no limit
        backend = OpenAIBackend(settings(api.base_url, rpm=600, max_concurrency=16))
        engine = LLMEngine(backend, RequestCache(tmp_path / "llm.sqlite"))
        started = time.monotonic()
        engine.complete(requests(40))
        elapsed = time.monotonic() - started
    # 10/s with a bucket of one second's sends: the first 10 at once, then 30 at 10/s.
    assert elapsed >= 2.7
    assert elapsed < 8.0


def test_a_token_limit_paces_by_prompt_and_max_tokens(tmp_path):
    with SimulatedAPI(tpm=60_000, latency_median_s=0.01, seed=3) as api:
        api._sim.limiter.tokens.level = 0.0  # a minute of full use left nothing
        backend = OpenAIBackend(settings(api.base_url))
        engine = LLMEngine(backend, RequestCache(tmp_path / "llm.sqlite"))
        big = Sampling(max_new_tokens=200, temperature=0.7)
        started = time.monotonic()
        # ~210 tokens each at 1,000 tokens/s: 20 requests take about 4 s.
        results = engine.complete([ChatRequest.of(f"q {i}", sampling=big, seed=i) for i in range(20)])
        elapsed = time.monotonic() - started
        stats = api.stats()
    assert all(r.ok for r in results) and backend.pacer is not None and backend.pacer.tpm == 60_000
    # The first sends go out before any header was read (and their retries): a few 429s, no more.
    assert stats["rate_limited"] <= 16 and elapsed >= 3.0


def test_the_pacer_never_exceeds_max_concurrency(tmp_path):
    with LoopbackServer(latency_s=0.05) as server:
        engine = open_engine(settings(server.base_url, max_concurrency=3), cache_path=tmp_path / "llm.sqlite")
        engine.complete(requests(20))
    assert server.peak_in_flight <= 3


async def _pause_then_send(pacer: Pacer) -> float:
    import asyncio

    loop = asyncio.get_running_loop()
    pacer.observe({"retry-after-ms": "400", "x-ratelimit-limit-requests": "6000"}, 429)
    started = loop.time()
    await pacer.wait(10)
    return loop.time() - started


def test_a_429_pauses_every_send_for_its_retry_after():
    import asyncio

    assert asyncio.run(_pause_then_send(Pacer())) >= 0.38


# ------------------------------------------------------------------------------------------
# A 200 whose body is not JSON


def test_a_200_with_a_body_that_is_not_json_is_retried_like_a_5xx_then_succeeds(tmp_path):
    with LoopbackServer() as server:
        server.script(Fault.broken_body(), Fault.broken_body(), prompt="flaky body")
        engine = open_engine(settings(server.base_url, max_retries=3), cache_path=tmp_path / "llm.sqlite")
        [result] = engine.complete([ChatRequest.of("flaky body", sampling=SHORT)])
        outcomes = [a.outcome for a in server.arrivals("flaky body")]
    assert result.ok and result.text == "echo: flaky body"
    assert outcomes == ["broken body", "broken body", "ok"]


def test_a_body_that_stays_broken_is_a_failed_call_with_its_raw_body_in_one_line(tmp_path):
    with LoopbackServer() as server:
        server.script(*[Fault.broken_body()] * 5, prompt="broken")
        engine = open_engine(settings(server.base_url, max_retries=2), cache_path=tmp_path / "llm.sqlite")
        ok, broken = engine.complete([ChatRequest.of("fine", sampling=SHORT), ChatRequest.of("broken", sampling=SHORT)])
        asked = server.count("broken")
    assert ok.ok and not broken.ok and asked == 3  # 1 + max_retries, as for a 5xx
    assert broken.error.startswith("BrokenResponseBodyError: the server answered 200 with a body that is not JSON")
    assert '{\\"id\\": \\"chatcmpl-broken\\"' in broken.error and "\n" not in broken.error
    assert engine.cache.count() == 1  # a failed call is not cached: the next run asks again


# ------------------------------------------------------------------------------------------
# The model id as the API returned it


def test_the_returned_model_id_is_on_the_result_and_in_the_cache(tmp_path):
    with SimulatedAPI(latency_median_s=0.0) as api:
        engine = open_engine(settings(api.base_url), cache_path=tmp_path / "llm.sqlite")
        [fresh] = engine.complete(requests(1))
        [cached] = engine.complete(requests(1))
    assert fresh.model == cached.model == "gpt-4o-2024-08-06" and cached.cached
    with contextlib.closing(sqlite3.connect(tmp_path / "llm.sqlite")) as db:
        assert db.execute("SELECT returned_model FROM completions").fetchall() == [("gpt-4o-2024-08-06",)]


def test_a_cache_from_before_the_new_columns_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE completions (key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, "
            "text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, "
            "latency_s REAL NOT NULL, created_at REAL NOT NULL)"
        )
        db.execute("INSERT INTO completions VALUES ('k', 'm', '{}', 'old answer', 3, 2, 0.1, 0.0)")
        db.commit()
    cache = RequestCache(path)
    assert cache.get_many(["k"])["k"].text == "old answer"
    assert cache.spent_usd("m", "teacher") == 0.0  # nothing recorded then: nothing counted
    RequestCache(path).close()  # a second opening finds the columns there
    with contextlib.closing(sqlite3.connect(path)) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(completions)")}
    assert {"returned_model", "cost_usd", "payer"} <= columns


def test_every_judgment_records_the_judges_returned_model_id(tmp_path):
    from bench_samples import official_rows
    from janus_align.bench.schema import bench_item
    from janus_align.config.schema import JudgeConfig
    from janus_align.evaluate.judge import returned_models
    from janus_align.evaluate.judging import judge_candidates
    from janus_align.evaluate.responses import Response

    items = [bench_item(row, f"row {i}", i) for i, row in enumerate(official_rows(1))]
    responses = {"m": {items[0].id: Response(items[0].id, "an answer")}}
    config = JudgeConfig(llm=settings("unused", sampling=Sampling(max_new_tokens=64)), repeats=1, constrained=False)
    with SimulatedAPI(latency_median_s=0.0) as api:
        engine = open_engine(settings(api.base_url), cache_path=tmp_path / "llm.sqlite")
        rows = judge_candidates(engine, items, responses, config, seed=7)["m"]
    assert rows and all(r.judge_model_returned == "gpt-4o-2024-08-06" for r in rows)
    assert all(r.judge_model.endswith(":gpt-4o") for r in rows)  # what was asked for, beside it
    assert returned_models(rows) == {"judge_model_returned": "gpt-4o-2024-08-06"}


# ------------------------------------------------------------------------------------------
# The spending cap


def capped_engine(base_url: str, cache: Path, cap: float | None, payer: str = "teacher") -> LLMEngine:
    # One in flight: what is admitted depends on what was spent alone, not on timing.
    config = settings(base_url, prices=PRICES, max_cost_usd=cap, max_concurrency=1)
    return open_engine(config, cache_path=cache, payer=payer)


def test_a_stage_stops_before_the_request_that_would_cross_the_cap_and_a_resumed_run_counts_it(tmp_path):
    cache = tmp_path / "llm.sqlite"
    asked = requests(10)
    # Each request: prompt ~14 tokens estimated + 16 max_new_tokens ~ 0.03 USD at worst; the
    # loopback bills whitespace words (3 prompt, 2 answer tokens): 0.005 USD each.
    with LoopbackServer() as server:
        engine = capped_engine(server.base_url, cache, cap=0.07)
        with pytest.raises(SpendingCapReached) as stopped:
            engine.complete(asked)
        message = str(stopped.value)
        sent_first = server.count()
        # Admitted while spent + 0.03 <= 0.07: after 9 answers (0.045 USD) the 10th is not sent.
        assert sent_first == 9
        assert message.startswith("teacher.max_cost_usd = 0.07 USD reached:") and "\n" not in message
        assert "raise teacher.max_cost_usd in params.yaml" in message
        assert engine.cache.count() == sent_first  # every answer it got is kept
        spent = engine.spent_usd()
        assert spent == pytest.approx(0.005 * sent_first)
        engine.close()

        # A resumed run under the same cap counts what the first spent: it sends nothing new.
        again = capped_engine(server.base_url, cache, cap=0.07)
        with pytest.raises(SpendingCapReached, match=r"USD spent on .* \(this run and earlier ones"):
            again.complete(asked)
        again.close()
        assert server.count() == sent_first

        # Raised, the run goes on from where it stopped: the rest only, the first from the cache.
        raised = capped_engine(server.base_url, cache, cap=1.0)
        results = raised.complete(asked)
        raised.close()
    assert all(r.ok for r in results) and server.count() == 10
    assert sum(r.cached for r in results) == sent_first


def test_the_cap_counts_per_payer_so_a_judge_on_the_teachers_model_has_its_own(tmp_path):
    cache = tmp_path / "llm.sqlite"
    with LoopbackServer() as server:
        teacher = capped_engine(server.base_url, cache, cap=None)
        teacher.complete(requests(10, "synthesis"))
        assert teacher.spent_usd() == pytest.approx(0.05)
        teacher.close()
        judge = capped_engine(server.base_url, cache, cap=0.2, payer="judge.llm")
        assert judge.spent_usd() == 0.0
        assert all(r.ok for r in judge.complete(requests(3, "verdict")))
        judge.close()


def test_a_judge_that_reaches_its_cap_stops_naming_judge_llm_max_cost_usd(tmp_path):
    from bench_samples import official_rows
    from janus_align.bench.schema import bench_item
    from janus_align.config.schema import JudgeConfig
    from janus_align.evaluate.judging import judge_candidates
    from janus_align.evaluate.responses import Response

    items = [bench_item(row, f"row {i}", i) for i, row in enumerate(official_rows(2))]
    responses = {"m": {item.id: Response(item.id, "an answer") for item in items}}
    config = JudgeConfig(llm=settings("unused", sampling=Sampling(max_new_tokens=64)), repeats=1, constrained=False)
    with LoopbackServer(answer=lambda body: "Feedback: fine. [RESULT] 4") as server:
        # A verdict's prompt is ~1,000 tokens (~1 USD at worst here); the loopback bills ~0.4 USD.
        engine = capped_engine(server.base_url, tmp_path / "llm.sqlite", cap=2.5, payer="judge.llm")
        with pytest.raises(SpendingCapReached, match=r"^judge\.llm\.max_cost_usd = 2\.50 USD reached"):
            judge_candidates(engine, items, responses, config, seed=7)
        assert 1 <= server.count() < 8


async def _send_big(pacer: Pacer, count: int, tokens: int) -> float:
    import asyncio

    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(count):
        await pacer.wait(tokens)
    return loop.time() - started


def test_a_request_larger_than_a_seconds_tokens_waits_for_all_of_them():
    """At 3,600 TPM (60 tokens/s, a bucket of 60), three 120-token requests are 360 tokens, 300
    of them beyond the bucket: 5 s of refill, not the 2 s that requests cut to the bucket would take."""
    import asyncio

    assert 4.5 <= asyncio.run(_send_big(Pacer(tpm=3600), 3, 120)) < 6.5


def test_a_run_held_back_by_max_concurrency_rather_than_the_limit_says_what_width_would_reach_it():
    from janus_align.llm.openai_backend import concurrency_hint

    hint = concurrency_hint(6000, [0.5] * 200, 32, 60.0)
    assert hint is not None and "max_concurrency 32" in hint and "about 55 in flight" in hint
    assert concurrency_hint(6000, [0.5] * 200, 64, 99.0) is None  # at the limit
    assert concurrency_hint(6000, [0.5] * 200, 64, 60.0) is None  # wide enough: something else held it
    assert concurrency_hint(None, [0.5] * 200, 32, 60.0) is None  # no limit announced
