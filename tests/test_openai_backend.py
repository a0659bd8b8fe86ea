"""The openai backend against a real OpenAI-compatible HTTP server on 127.0.0.1.

The loopback server scripts the faults a paid API produces (429 with Retry-After, 500, a hang
past the timeout, malformed JSON) so each test pins how the engine recovers from one of them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from janus_align.config import OpenAISettings, Sampling
from janus_align.errors import JanusError
from janus_align.llm import ChatRequest, open_engine
from janus_align.llm.engine import LLMEngine
from loopback_server import Fault, LoopbackServer

GREEDY = Sampling(max_new_tokens=32, temperature=0.0, top_p=1.0)
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 40}, "score": {"type": "integer", "enum": [1, 2, 3]}},
    "required": ["answer", "score"],
    "additionalProperties": False,
}
KEY_ENV = "JANUS_TEST_OPENAI_KEY"


@pytest.fixture
def server():
    with LoopbackServer() as running:
        yield running


def engine_for(server: LoopbackServer, tmp_path: Path, **overrides) -> LLMEngine:
    settings = dict(
        backend="openai",
        model="loopback-model",
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        timeout_s=1.0,
        max_retries=3,
        max_concurrency=4,
    )
    return open_engine(OpenAISettings(**{**settings, **overrides}), cache_path=tmp_path / "llm.sqlite")


def test_429_with_retry_after_waits_that_long_then_succeeds(server, tmp_path):
    server.script(Fault.status_code(429, retry_after=1), prompt="rate limited")
    [result] = engine_for(server, tmp_path).complete([ChatRequest.of("rate limited", sampling=GREEDY)])
    assert result.ok and result.text == "echo: rate limited"
    first, second = server.arrivals("rate limited")
    assert first.outcome == "status 429" and second.outcome == "ok"
    # The SDK honours Retry-After exactly (no exponential backoff on top of it).
    assert 0.9 <= second.at - first.at < 1.8


def test_500_is_retried_with_backoff_then_succeeds(server, tmp_path):
    server.script(Fault.status_code(500), Fault.status_code(503), prompt="flaky")
    [result] = engine_for(server, tmp_path).complete([ChatRequest.of("flaky", sampling=GREEDY)])
    assert result.ok and result.text == "echo: flaky"
    arrivals = server.arrivals("flaky")
    assert [a.outcome for a in arrivals] == ["status 500", "status 503", "ok"]
    gaps = [b.at - a.at for a, b in zip(arrivals, arrivals[1:])]
    # Exponential backoff with jitter: 0.5 s * (0.75..1), then 1 s * (0.75..1).
    assert 0.3 <= gaps[0] <= 0.9 and 0.7 <= gaps[1] <= 1.5


def test_hang_past_timeout_is_abandoned_and_retried(server, tmp_path):
    server.script(Fault.hang(4.0), prompt="slow")
    started = time.monotonic()
    [result] = engine_for(server, tmp_path, timeout_s=1.0).complete([ChatRequest.of("slow", sampling=GREEDY)])
    elapsed = time.monotonic() - started
    assert result.ok and result.text == "echo: slow"
    first, second = server.arrivals("slow")
    assert first.outcome == "hang"
    assert second.at - first.at >= 1.0  # the client waited for its timeout, not for the hang
    assert elapsed < 3.5


def test_retries_exhausted_is_a_failed_result_not_an_exception(server, tmp_path):
    server.script(*[Fault.status_code(500)] * 3, prompt="down")
    engine = engine_for(server, tmp_path, max_retries=2)
    ok, down = engine.complete([ChatRequest.of("fine", sampling=GREEDY), ChatRequest.of("down", sampling=GREEDY)])
    assert ok.ok and not down.ok
    assert "500" in down.error
    assert engine.usage.failed == 1
    assert engine.cache.count() == 1  # failures are not cached, so a re-run retries them
    [again] = engine.complete([ChatRequest.of("down", sampling=GREEDY)])
    assert again.ok and server.count("down") == 4


def _ask_until_usable(engine: LLMEngine, prompt: str, max_reasks: int):
    """One unit through the synthesis stages' loop (`synth.teacher.ask`), seeded per attempt."""
    from janus_align.seeding import derive_seed
    from janus_align.synth.teacher import ask

    def build(unit: str, attempt: int) -> ChatRequest:
        return ChatRequest.of(
            unit,
            system="You are a judge.",
            sampling=GREEDY,
            seed=derive_seed(7, "test", unit, attempt),
            response_schema=ANSWER_SCHEMA,
        )

    [outcome] = ask(engine, [prompt], build, lambda unit, result: (result.parsed, None), max_reasks, desc="test")
    return outcome


def test_malformed_json_is_asked_again_with_a_new_seed_until_valid(server, tmp_path):
    server.script(Fault.malformed(), prompt="rate this")
    outcome = _ask_until_usable(engine_for(server, tmp_path), "rate this", max_reasks=2)
    assert outcome.ok and outcome.value == {"answer": "xx", "score": 1}
    assert outcome.attempts == 2
    first, again = server.received
    # Structured output is requested through response_format, with the schema itself.
    assert first.body["response_format"]["json_schema"]["schema"] == ANSWER_SCHEMA
    # Asked again as a fresh request: the same messages (no correction turn), a new seed.
    assert again.body["messages"] == first.body["messages"]
    assert again.body["seed"] != first.body["seed"]


@pytest.mark.parametrize("max_reasks", [0, 1, 3])
def test_a_unit_whose_answers_are_never_valid_json_costs_max_reasks_plus_one_calls(server, tmp_path, max_reasks):
    """One re-ask loop: the engine only parses; the stage asks again (new seed) up to max_reasks."""
    server.script(*[Fault.malformed()] * 10)
    outcome = _ask_until_usable(engine_for(server, tmp_path), "rate this", max_reasks)
    assert not outcome.ok and "not valid JSON" in (outcome.reason or "")
    assert server.count() == outcome.attempts == max_reasks + 1
    assert len({r.body["seed"] for r in server.received}) == max_reasks + 1


def test_server_without_json_schema_form_is_asked_with_json_object(tmp_path):
    with LoopbackServer(accepts_json_schema=False) as server:
        engine = engine_for(server, tmp_path)
        [first] = engine.complete([ChatRequest.of("first", sampling=GREEDY, response_schema=ANSWER_SCHEMA)])
        [second] = engine.complete([ChatRequest.of("second", sampling=GREEDY, response_schema=ANSWER_SCHEMA)])
    assert first.parsed == second.parsed == {"answer": "xx", "score": 1}
    forms = [(r.prompt, r.body["response_format"]["type"], r.outcome) for r in server.received]
    # One rejected request teaches the backend the server's form; later requests use it directly.
    assert forms == [
        ("first", "json_schema", "status 422"),
        ("first", "json_object", "ok"),
        ("second", "json_object", "ok"),
    ]
    assert server.received[1].body["response_format"]["schema"] == ANSWER_SCHEMA


def test_rejected_request_without_schema_is_an_error_result(server, tmp_path):
    server.script(Fault.status_code(400), prompt="bad")
    [result] = engine_for(server, tmp_path).complete([ChatRequest.of("bad", sampling=GREEDY)])
    assert result.error.startswith("BadRequestError") and server.count("bad") == 1  # 400 is not retried


def test_a_regex_is_not_sent_to_an_openai_server_but_is_a_gbnf_grammar_for_llama_server(server, tmp_path):
    """OpenAI's API has no regex constraint (and rejects unknown fields): the request goes out
    unconstrained and the stage's own check decides; llama-server takes a simple one as GBNF."""
    from janus_align.llm.llama_server import LlamaServerBackend, regex_grammar
    from janus_align.llm.openai_backend import OpenAIBackend
    from janus_align.synth.system_messages import PARAGRAPH_REGEX

    one_line = r"[^\n\r]+"
    [result] = engine_for(server, tmp_path).complete(
        [ChatRequest.of("one line", sampling=GREEDY, response_regex=one_line)]
    )
    assert result.ok and result.text == "echo: one line"
    [received] = server.received
    assert set(received.body) == {"model", "messages", "max_tokens", "temperature", "top_p", "seed"}

    assert regex_grammar(one_line) == r"root ::= [^\n\r]+"
    assert regex_grammar("[a-z0-9 ,.-]*") == "root ::= [a-z0-9 ,.-]*"
    assert regex_grammar(PARAGRAPH_REGEX) == r"root ::= [^\n\r]* [^\n\r\t :]"
    # Anything else GBNF would read differently (or not at all) is not translated.
    assert [regex_grammar(r) for r in (r"[\d]+", r"[^\n]+x", "(yes|no)", r"[^\n]{1,9}", "[]+")] == [None] * 5
    llama = object.__new__(LlamaServerBackend)  # its body without starting a server
    OpenAIBackend.__init__(llama, OpenAISettings(model="m", base_url=server.base_url, api_key_env=KEY_ENV))
    body = llama._body(ChatRequest.of("x", sampling=GREEDY, response_regex=one_line))
    assert body["grammar"] == r"root ::= [^\n\r]+" and "response_format" not in body
    assert "grammar" not in llama._body(ChatRequest.of("x", sampling=GREEDY, response_regex="(yes|no)"))
    assert "grammar" not in llama._body(ChatRequest.of("x", sampling=GREEDY))


def test_malformed_json_is_reported_unparsed_and_not_reasked_by_the_engine(server, tmp_path):
    server.script(*[Fault.malformed()] * 5)
    request = ChatRequest.of("rate this", sampling=GREEDY, response_schema=ANSWER_SCHEMA)
    [result] = engine_for(server, tmp_path).complete([request])
    assert result.parsed is None and result.error.startswith("not valid JSON")
    assert result.attempts == 1 and server.count() == 1


def test_concurrency_is_bounded_by_max_concurrency(tmp_path):
    with LoopbackServer(latency_s=0.2) as server:
        engine = engine_for(server, tmp_path, max_concurrency=3)
        started = time.monotonic()
        results = engine.complete([ChatRequest.of(f"q{i}", sampling=GREEDY) for i in range(9)])
        elapsed = time.monotonic() - started
    assert [r.text for r in results] == [f"echo: q{i}" for i in range(9)]  # order kept
    assert server.peak_in_flight == 3
    assert 0.55 <= elapsed < 2.0  # three waves of 0.2 s


def test_usage_and_cost_follow_server_usage_and_params_prices(server, tmp_path):
    prices = {"input_per_mtok": 10.0, "output_per_mtok": 30.0}
    server.script(Fault.malformed(), prompt="structured")
    requests = [ChatRequest.of(f"plain question {i}", sampling=GREEDY) for i in range(3)]
    requests.append(ChatRequest.of("structured", sampling=GREEDY, response_schema=ANSWER_SCHEMA))
    engine = engine_for(server, tmp_path, prices=prices)
    results = engine.complete(requests)
    # The stage asks the malformed one again with a new seed (synth.teacher.ask_jobs).
    engine.complete([ChatRequest.of("structured", sampling=GREEDY, seed=1, response_schema=ANSWER_SCHEMA)])
    billed = [r.usage for r in server.received]
    prompt_tokens = sum(u["prompt_tokens"] for u in billed)
    completion_tokens = sum(u["completion_tokens"] for u in billed)
    usage = engine.usage.as_dict()
    # The malformed answer was paid for too: every billed token is counted, asks again included.
    assert (usage["requests"], usage["cached"], usage["failed"]) == (5, 0, 0)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt_tokens, completion_tokens)
    assert usage["cost_usd"] == pytest.approx((prompt_tokens * 10 + completion_tokens * 30) / 1e6)
    # Requests are concurrent: match each plain answer to what the server billed for its prompt.
    billed_for = {r.prompt: r.usage["completion_tokens"] for r in server.received if r.prompt != "structured"}
    assert [r.completion_tokens for r in results[:3]] == [billed_for[f"plain question {i}"] for i in range(3)]

    # A second run is answered from the cache: no request reaches the server, nothing is spent.
    again = engine_for(server, tmp_path, prices=prices)
    assert [r.text for r in again.complete(requests)] == [r.text for r in results]
    assert server.count() == 5
    assert again.usage.as_dict()["cost_usd"] == 0.0 and again.usage.cached == again.usage.requests


def test_missing_api_key_without_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = OpenAISettings(model="gpt-4-0125-preview", api_key_env=KEY_ENV)
    with pytest.raises(JanusError, match=rf"\${KEY_ENV}"):
        open_engine(config, cache_path=":memory:")


def test_api_key_only_from_environment_and_never_in_results_cache_or_logs(server, tmp_path, monkeypatch, caplog, capfd):
    secret = "sk-janus-test-5f1e9c0b7a"
    monkeypatch.setenv(KEY_ENV, secret)
    with pytest.raises(ValueError):
        OpenAISettings(api_key=secret)  # params have no place for a key
    server.script(*[Fault.status_code(500)] * 2, prompt="fails")
    server.script(Fault.malformed(), prompt="structured")
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs included
    engine = engine_for(server, tmp_path, max_retries=1)
    results = engine.complete(
        [
            ChatRequest.of("works", sampling=GREEDY),
            ChatRequest.of("fails", sampling=GREEDY),
            ChatRequest.of("structured", sampling=GREEDY, response_schema=ANSWER_SCHEMA),
        ]
    )
    # The malformed one asked again with a new seed, as a stage does.
    results += engine.complete([ChatRequest.of("structured", sampling=GREEDY, seed=1, response_schema=ANSWER_SCHEMA)])
    engine.close()
    assert [r.ok for r in results] == [True, False, False, True]
    # The key did go to the server, as a bearer token ...
    assert {r.authorization for r in server.received} == {f"Bearer {secret}"}
    # ... and nowhere else.
    out, err = capfd.readouterr()
    places = {
        "results": repr(results),
        "model_id": engine.model_id,
        "usage": repr(engine.usage.as_dict()),
        "logs": caplog.text,
        "stdout/stderr": out + err,
        "cache": (tmp_path / "llm.sqlite").read_bytes().decode("latin-1"),
    }
    assert caplog.text, "debug logging should have captured the SDK's request log"
    assert [where for where, text in places.items() if secret in text] == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python (extra `llama`) not installed"
)
def test_against_real_llama_cpp_server_with_embedded_gguf(tmp_path):
    from janus_align.models.prepare_model import embedded_gguf

    directory, filename = embedded_gguf("smollm2-135m-instruct")
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(directory / filename),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not come up")
                time.sleep(0.5)
        config = OpenAISettings(model="smollm2", base_url=base_url, timeout_s=120, max_concurrency=2)
        engine = open_engine(config, cache_path=tmp_path / "llm.sqlite")
        plain, structured = engine.complete(
            [
                ChatRequest.of(
                    "What is the capital of France?", system="Answer in one short sentence.", sampling=GREEDY
                ),
                ChatRequest.of("Rate the word 'sunny' from 1 to 3.", sampling=GREEDY, response_schema=ANSWER_SCHEMA),
            ]
        )
        assert plain.ok and plain.text.strip() and plain.completion_tokens > 0
        assert structured.ok and structured.error is None and set(structured.parsed) == {"answer", "score"}
        assert engine.usage.prompt_tokens > 0
    finally:
        process.terminate()
        process.wait(timeout=30)


class _Healing:
    """A server's answer function: unusable answers until `healed`, then valid ones."""

    def __init__(self, unusable: str):
        self.unusable, self.healed = unusable, False

    def __call__(self, body: dict) -> str:
        from loopback_server import default_answer

        return default_answer(body) if self.healed else self.unusable


@pytest.mark.parametrize("unusable", ["", "I cannot help with that.", '{"answer": 3}', '{"answer": "cut sho'])
def test_a_stage_that_rejected_unusable_answers_asks_again_once_the_api_has_healed(tmp_path, monkeypatch, unusable):
    """Garbage, empty, off-schema and cut answers fail the stage naming its rejects file; they are
    set aside in the cache (not served), so the re-run after the API heals asks afresh and succeeds."""
    from janus_align.config import load_params
    from janus_align.synth.teacher import ask, finish_stage

    monkeypatch.chdir(tmp_path)
    params = load_params(Path(__file__).parents[1] / "params.yaml")
    answers = _Healing(unusable)
    units = [f"question {i}" for i in range(3)]

    def run_stage(server: LoopbackServer) -> list:
        engine = engine_for(server, tmp_path)
        try:

            def build(unit: str, attempt: int) -> ChatRequest:
                return ChatRequest.of(unit, sampling=GREEDY, seed=attempt, response_schema=ANSWER_SCHEMA)

            outcomes = ask(engine, units, build, lambda unit, result: (result.parsed, None), 1, desc="toy")
            finish_stage("toy", params, engine, outcomes, [], [], time.perf_counter(), tmp_path / "toy.jsonl")
            return outcomes
        finally:
            engine.close()

    with LoopbackServer(answer=answers) as server:
        with pytest.raises(JanusError) as failed:
            run_stage(server)
        message = str(failed.value)
        assert "rejects.jsonl" in message and "a re-run asks the teacher afresh for these 3" in message
        # Each unit asked, then re-asked once with a new seed (an empty answer is no answer: not re-asked).
        asked = 3 if unusable == "" else 6
        assert "\n" not in message and server.count() == asked
        with contextlib.closing(sqlite3.connect(tmp_path / "llm.sqlite")) as db:
            assert db.execute("SELECT COUNT(*) FROM completions").fetchone() == (0,)
            kept = db.execute("SELECT text, reason FROM rejected").fetchall()
        assert len(kept) == asked and all(text == unusable and reason for text, reason in kept)

        answers.healed = True
        outcomes = run_stage(server)
        assert server.count() == asked + 3  # the 3 first asks again, fresh (none served from the cache)
        assert all(o.ok and o.value == {"answer": "xx", "score": 1} for o in outcomes)
        outcomes = run_stage(server)  # accepted answers are served from the cache as ever
        assert server.count() == asked + 3 and all(o.ok for o in outcomes)


def test_a_judge_verdict_left_unscored_is_asked_again_on_the_next_run(tmp_path):
    from bench_samples import official_rows
    from janus_align.bench.schema import bench_item
    from janus_align.config.schema import JudgeConfig
    from janus_align.evaluate.judging import judge_candidates
    from janus_align.evaluate.responses import Response

    items = [bench_item(row, f"row {i}", i) for i, row in enumerate(official_rows(1))]
    responses = {"m": {items[0].id: Response(items[0].id, "an answer")}}
    config = JudgeConfig(
        llm=OpenAISettings(model="judge", sampling=Sampling(max_new_tokens=64, temperature=1.0)),
        repeats=1,
        max_reasks=1,
        constrained=False,
    )
    answers = _Healing("no verdict here")
    answers_ok = "Feedback: fine. [RESULT] 4"
    with LoopbackServer(answer=lambda body: answers_ok if answers.healed else answers(body)) as server:
        engine = engine_for(server, tmp_path)
        rows = judge_candidates(engine, items, responses, config, seed=7)["m"]
        assert all(r.verdict is None for r in rows) and server.count() == 8
        engine.close()
        answers.healed = True
        engine = engine_for(server, tmp_path)
        rows = judge_candidates(engine, items, responses, config, seed=7)["m"]
        engine.close()
    assert all(r.verdict == 4 for r in rows) and server.count() == 12
