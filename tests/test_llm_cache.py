"""The request cache: what its key is made of, how it stores answers, and resume after SIGKILL."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from janus_align.config import OpenAISettings, Sampling
from janus_align.llm import ChatRequest, ChatResult, open_engine
from janus_align.llm.cache import RequestCache
from loopback_server import Fault, LoopbackServer

SAMPLING = Sampling(max_new_tokens=32, temperature=0.7, top_p=0.9)
SCHEMA = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 8}}, "required": ["a"]}


def base_request(**changes) -> ChatRequest:
    fields = dict(user="Explain tides.", system="Be brief.", sampling=SAMPLING, seed=1, response_schema=None)
    fields.update(changes)
    return ChatRequest.of(fields.pop("user"), **fields)


def test_cache_key_covers_model_messages_sampling_seed_and_schema():
    key = base_request().cache_key("model-a")
    assert base_request().cache_key("model-a") == key  # deterministic, across processes too (sha256)
    variants = {
        "model id": base_request().cache_key("model-b"),
        "user message": base_request(user="Explain waves.").cache_key("model-a"),
        "system message": base_request(system="Be thorough.").cache_key("model-a"),
        "no system message": base_request(system=None).cache_key("model-a"),
        "max_new_tokens": base_request(sampling=SAMPLING.model_copy(update={"max_new_tokens": 33})).cache_key(
            "model-a"
        ),
        "temperature": base_request(sampling=SAMPLING.model_copy(update={"temperature": 0.0})).cache_key("model-a"),
        "top_p": base_request(sampling=SAMPLING.model_copy(update={"top_p": 1.0})).cache_key("model-a"),
        "repetition_penalty": base_request(sampling=SAMPLING.model_copy(update={"repetition_penalty": 1.1})).cache_key(
            "model-a"
        ),
        "seed": base_request(seed=2).cache_key("model-a"),
        "schema": base_request(response_schema=SCHEMA).cache_key("model-a"),
    }
    assert [what for what, other in variants.items() if other == key] == []
    assert len(set(variants.values())) == len(variants)


def test_parser_settings_are_not_part_of_the_key_so_cached_answers_are_reparsed(tmp_path):
    cache_path = tmp_path / "llm.sqlite"
    request = base_request(response_schema=SCHEMA)
    with LoopbackServer() as server:
        config = OpenAISettings(model="m", base_url=server.base_url)
        [first] = open_engine(config, cache_path=cache_path).complete([request])
        # A second engine over the same cache: the answer is not asked again, but parsed again
        # from the stored raw text (so a parser fix re-reads cached answers).
        strict = open_engine(config, cache_path=cache_path)
        [again] = strict.complete([request])
        assert server.count() == 1
    assert again.cached and again.text == first.text
    assert again.parsed == first.parsed == {"a": "xx"}
    assert strict.usage.cached == 1


def test_cache_is_wal_sqlite_storing_raw_text_usage_latency_and_time(tmp_path):
    path = tmp_path / "nested" / "llm.sqlite"
    cache = RequestCache(path)
    request = base_request()
    key = request.cache_key("m")
    before = time.time()
    cache.put(key, "m", request, ChatResult("raw answer", prompt_tokens=7, completion_tokens=3, latency_s=0.25))
    cache.put(key, "m", request, ChatResult("a second answer is ignored", 1, 1, 0.1))
    cache.put(base_request(seed=9).cache_key("m"), "m", base_request(seed=9), ChatResult("", error="HTTP 500"))
    assert cache.count() == 1  # failures are not stored; a key is stored once

    with contextlib.closing(sqlite3.connect(path)) as other:  # what another process sees
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        model, stored_request, text, prompt_tokens, completion_tokens, latency, created = other.execute(
            "SELECT model, request, text, prompt_tokens, completion_tokens, latency_s, created_at FROM completions"
        ).fetchone()
    assert (model, text, prompt_tokens, completion_tokens, latency) == ("m", "raw answer", 7, 3, 0.25)
    assert json.loads(stored_request)["messages"] == list(request.messages)
    assert before <= created <= time.time()

    hit = cache.get_many([key, "missing"])
    assert list(hit) == [key]
    assert (hit[key].text, hit[key].cached, hit[key].prompt_tokens) == ("raw answer", True, 7)


# The stage stand-in that gets killed: N requests through the real engine, results to a file.
CHILD = textwrap.dedent(
    """
    import json, sys
    from janus_align.config import OpenAISettings, Sampling
    from janus_align.llm import ChatRequest, open_engine

    base_url, cache_path, out_path, n = sys.argv[1:5]
    config = OpenAISettings(model="loopback", base_url=base_url, max_concurrency=2, timeout_s=30)
    engine = open_engine(config, cache_path=cache_path)
    sampling = Sampling(max_new_tokens=16, temperature=0.7)
    requests = [ChatRequest.of(f"question {i}", sampling=sampling, seed=i) for i in range(int(n))]
    results = engine.complete(requests, desc="kill test")
    json.dump({"texts": [r.text for r in results], "errors": [r.error for r in results],
               "usage": engine.usage.as_dict()}, open(out_path, "w"))
    """
)


def committed_prompts(cache_path: Path) -> list[str]:
    """The last user message of every row another process has committed."""
    if not cache_path.exists():  # connecting would create it
        return []
    with contextlib.closing(sqlite3.connect(cache_path, timeout=30)) as db:
        try:
            rows = db.execute("SELECT request FROM completions").fetchall()
        except sqlite3.OperationalError:  # the child has not created the table yet
            return []
    return [json.loads(request)["messages"][-1]["content"] for (request,) in rows]


def test_resume_after_sigkill_repeats_no_completed_request(tmp_path):
    n = 24
    script, cache_path, out_path = tmp_path / "child.py", tmp_path / "llm.sqlite", tmp_path / "out.json"
    script.write_text(CHILD)
    with LoopbackServer(latency_s=0.25) as server:
        argv = [sys.executable, str(script), server.base_url, str(cache_path), str(out_path), str(n)]

        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(committed_prompts(cache_path)) < 6:
            assert child.poll() is None, "the child finished or died before it could be killed"
            assert time.monotonic() < deadline, "the child committed nothing"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        done_before_kill = committed_prompts(cache_path)
        received_before_kill = server.counts_by_prompt()
        assert 6 <= len(done_before_kill) < n and not out_path.exists()  # killed mid-run

        rerun = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        received = server.counts_by_prompt()
        by_body = server.counts_by_body()

    out = json.loads(out_path.read_text())
    assert out["errors"] == [None] * n
    assert out["texts"] == [f"echo: question {i}" for i in range(n)]  # every request answered, in order
    assert out["usage"]["cached"] == len(done_before_kill)
    # No completed request was sent again; only those in flight at the kill were.
    assert {p: received[p] for p in done_before_kill} == {p: 1 for p in done_before_kill}
    in_flight_at_kill = set(received_before_kill) - set(done_before_kill)
    assert {p for p, count in received.items() if count > 1} <= in_flight_at_kill
    assert len(in_flight_at_kill) <= 2  # max_concurrency
    assert max(by_body.values()) <= 2 and len(by_body) == n
    # Every request has exactly one row: nothing lost, nothing duplicated.
    rows = committed_prompts(cache_path)
    assert sorted(rows) == sorted(f"question {i}" for i in range(n))
    with contextlib.closing(sqlite3.connect(cache_path)) as db:
        assert db.execute("SELECT COUNT(DISTINCT key), COUNT(*) FROM completions").fetchone() == (n, n)


# A stage run sharing the cache with others: it opens its engine, says so (`ready`), waits until
# every party is ready (so the runs truly overlap), answers N requests, writes what it got.
SHARING_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from janus_align.config import OpenAISettings, Sampling
    from janus_align.llm import ChatRequest, LLMEngine
    from janus_align.llm.cache import RequestCache
    from janus_align.llm.openai_backend import OpenAIBackend

    base_url, cache_path, out_path, n, ttl, ready_dir, parties = sys.argv[1:8]
    config = OpenAISettings(model="loopback", base_url=base_url, max_concurrency=4, timeout_s=30, max_retries=0)
    engine = LLMEngine(OpenAIBackend(config), RequestCache(cache_path, claim_ttl_s=float(ttl)))
    Path(ready_dir, out_path.replace("/", "_")).touch()
    while len(list(Path(ready_dir).iterdir())) < int(parties):
        time.sleep(0.01)
    started = time.time()
    sampling = Sampling(max_new_tokens=16, temperature=0.7)
    requests = [ChatRequest.of(f"question {i}", sampling=sampling, seed=i) for i in range(int(n))]
    results = engine.complete(requests, desc="sharing test")
    json.dump({"texts": [r.text for r in results], "errors": [r.error for r in results], "started": started,
               "wall_s": time.time() - started, "usage": engine.usage.as_dict()}, open(out_path, "w"))
    engine.close()
    """
)


def _sharing_child(server: LoopbackServer, tmp_path: Path, name: str, n: int, ttl: float, parties: int) -> list[str]:
    script = tmp_path / "sharing_child.py"
    script.write_text(SHARING_CHILD)
    ready = tmp_path / "ready"
    ready.mkdir(exist_ok=True)
    out = tmp_path / f"{name}.json"
    return [sys.executable, str(script), server.base_url, str(tmp_path / "llm.sqlite"), str(out), str(n), str(ttl),
            str(ready), str(parties)]  # fmt: skip


def _claims(cache_path: Path) -> list[tuple[str, float]]:
    if not cache_path.exists():
        return []
    with contextlib.closing(sqlite3.connect(cache_path, timeout=30)) as db:
        try:
            return db.execute("SELECT owner, expires_at FROM claims").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


def test_two_processes_over_one_cache_send_each_request_once(tmp_path):
    n = 40
    with LoopbackServer(latency_s=0.1) as server:
        children = [
            subprocess.Popen(_sharing_child(server, tmp_path, name, n, 60, 2), stderr=subprocess.PIPE, text=True)
            for name in ("first", "second")
        ]
        for child in children:
            _, stderr = child.communicate(timeout=180)
            assert child.returncode == 0, stderr[-2000:]
        received = server.counts_by_prompt()
    outs = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("first", "second")]
    expected = [f"echo: question {i}" for i in range(n)]
    assert [out["texts"] for out in outs] == [expected, expected]  # both runs got every answer
    assert abs(outs[0]["started"] - outs[1]["started"]) < 1.0  # they did run at the same time
    assert received == {f"question {i}": 1 for i in range(n)}  # and paid for each request once
    assert sum(out["usage"]["cached"] for out in outs) == n  # what one sent, the other waited for
    assert _claims(tmp_path / "llm.sqlite") == []  # every claim released


def _wait_for_claims(cache_path: Path, count: int, child: subprocess.Popen) -> list[tuple[str, float]]:
    deadline = time.monotonic() + 120
    while len(claims := _claims(cache_path)) < count:
        assert child.poll() is None, "the first run ended before it had claimed its requests"
        assert time.monotonic() < deadline, "the first run claimed nothing"
        time.sleep(0.02)
    return claims


def test_claims_of_a_sigkilled_run_are_taken_over_at_once(tmp_path):
    """Its process is gone (same host): the re-run need not wait for the claims to expire."""
    n = 12
    with LoopbackServer() as server:
        server.script(*[Fault.hang(5)] * 4)  # the first run's first four (max_concurrency) stay in flight
        first = subprocess.Popen(_sharing_child(server, tmp_path, "first", n, 60, 1), stderr=subprocess.DEVNULL)
        _wait_for_claims(tmp_path / "llm.sqlite", n, first)
        while server.count() < 4:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
        (tmp_path / "ready").rename(tmp_path / "ready-first")
        rerun = subprocess.run(_sharing_child(server, tmp_path, "rerun", n, 60, 1), capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        received = server.counts_by_prompt()
    out = json.loads((tmp_path / "rerun.json").read_text())
    assert out["texts"] == [f"echo: question {i}" for i in range(n)]
    assert out["wall_s"] < 30  # far under the claims' 60 s
    assert sorted(received.values()) == [1] * (n - 4) + [2] * 4  # only the four in flight at the kill twice


def test_claims_of_a_frozen_run_are_taken_over_after_they_expire(tmp_path):
    """A SIGSTOPped process is alive but renews nothing: its claims hold until their expiry, then
    the other run sends what they covered; it is killed before it can send anything twice."""
    n, ttl = 12, 2.0
    cache_path = tmp_path / "llm.sqlite"
    with LoopbackServer() as server:
        server.script(*[Fault.hang(10)] * 4)
        frozen = subprocess.Popen(_sharing_child(server, tmp_path, "frozen", n, ttl, 1), stderr=subprocess.DEVNULL)
        try:
            _wait_for_claims(cache_path, n, frozen)
            while server.count() < 4:
                time.sleep(0.02)
            frozen.send_signal(signal.SIGSTOP)
            expiry = max(expires for _, expires in _claims(cache_path))
            (tmp_path / "ready").rename(tmp_path / "ready-frozen")
            other = subprocess.run(_sharing_child(server, tmp_path, "other", n, ttl, 1), capture_output=True, text=True)
            assert other.returncode == 0, other.stderr[-2000:]
            received = server.counts_by_prompt()
            clock = time.time() - time.monotonic()  # server arrivals are monotonic
            first_send = min(r.at for r in server.received[4:]) + clock
        finally:
            frozen.kill()
            frozen.wait(timeout=30)
    out = json.loads((tmp_path / "other.json").read_text())
    assert out["texts"] == [f"echo: question {i}" for i in range(n)]
    assert first_send >= expiry - 0.05  # nothing sent while the frozen run's claims held
    assert sorted(received.values()) == [1] * (n - 4) + [2] * 4
