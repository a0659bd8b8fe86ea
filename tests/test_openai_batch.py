"""The openai_batch backend against the simulated OpenAI API (real SDK, real HTTP, real cache).

The simulator (janus_align.simulated_api) runs the Batch API's lifecycle on the clock: results
come back shuffled, a share of the requests can fail (error file) or never finish (expiry), and
its store lets a test see exactly which custom ids each batch held.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from janus_align.config import OpenAIBatchSettings, OpenAISettings, Prices, Sampling
from janus_align.config.schema import billed_prices, parse_llm_settings
from janus_align.llm import ChatRequest, ChatResult, open_engine, openai_batch
from janus_align.llm.openai_backend import OpenAIBackend, chat_body
from janus_align.llm.openai_batch import (
    BatchLedger,
    batch_line,
    ledger_path,
    line_outcome,
    read_jsonl,
    split_lines,
)
from janus_align.llm.progress import RequestProgress
from janus_align.plan import _llm
from janus_align.simulated_api import SimulatedAPI

KEY_ENV = "JANUS_TEST_OPENAI_KEY"
MODEL = "gpt-4o-mini"
GREEDY = Sampling(max_new_tokens=32, temperature=0.0, top_p=1.0)
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 40}},
    "required": ["answer"],
    "additionalProperties": False,
}
REPO = Path(__file__).resolve().parents[1]


def settings(api: SimulatedAPI, **overrides) -> OpenAIBatchSettings:
    values = dict(
        backend="openai_batch",
        model=MODEL,
        base_url=api.base_url,
        api_key_env=KEY_ENV,
        timeout_s=10.0,
        max_retries=2,
        poll_interval_s=0.05,
        prices=Prices(input_per_mtok=10.0, output_per_mtok=30.0),
    )
    return OpenAIBatchSettings(**{**values, **overrides})


def questions(n: int, prefix: str = "q") -> list[ChatRequest]:
    return [ChatRequest.of(f"{prefix} {i}: say something", sampling=GREEDY, seed=i) for i in range(n)]


def batch_ids(api: SimulatedAPI) -> list[set[str]]:
    """The custom ids of every batch the simulator received, in the order they were created."""
    return [{line.custom_id for line in batch.lines} for batch in api._sim.store.batches.values()]


# --- pieces, no server ---------------------------------------------------------------------------


def test_a_batch_line_carries_exactly_the_sync_body():
    request = ChatRequest.of("hi", system="be brief", sampling=GREEDY, seed=3, response_schema=SCHEMA)
    line = json.loads(batch_line("id-1", chat_body(request, MODEL)))
    sync = OpenAIBackend(OpenAISettings(model=MODEL, base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV))
    assert line == {"custom_id": "id-1", "method": "POST", "url": "/v1/chat/completions", "body": sync._body(request)}


def test_split_respects_request_and_byte_limits_in_order():
    lines = [(f"id{i}", b"x" * 10 + b"\n") for i in range(7)]  # 11 bytes each
    by_count = list(split_lines(lines, max_requests=3, max_bytes=10_000))
    assert [len(f) for f in by_count] == [3, 3, 1]
    by_bytes = list(split_lines(lines, max_requests=100, max_bytes=25))  # two lines fit in 25 bytes
    assert [len(f) for f in by_bytes] == [2, 2, 2, 1]
    assert [cid for f in by_bytes for cid, _ in f] == [cid for cid, _ in lines]
    with pytest.raises(ValueError, match="id0 is 11 bytes, over the batch file limit of 5"):
        list(split_lines(lines, max_bytes=5))


def test_result_lines_are_read_by_custom_id_and_failures_classified():
    ok = {"custom_id": "a", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "A"}}]}}}
    server_error = {"custom_id": "b", "response": {"status_code": 500, "body": {"error": {"message": "boom"}}}}
    bad = {"custom_id": "c", "response": {"status_code": 400, "body": {"error": {"message": "bad max_tokens"}}}}
    expired = {"custom_id": "d", "response": None, "error": {"code": "batch_expired", "message": "late"}}
    text = "\n".join(json.dumps(x) for x in (expired, bad, server_error, ok)) + "\nnot json\n"
    lines = read_jsonl(text)
    assert sorted(lines) == ["a", "b", "c", "d"]
    outcomes = {cid: line_outcome(line, 1.0) for cid, line in lines.items()}
    assert outcomes["a"].result.ok and outcomes["a"].result.text == "A"
    assert [outcomes[c].retry for c in "bcd"] == [True, False, True]
    assert "batch_expired" in (outcomes["d"].result.error or "")


def test_the_ledger_lists_uncollected_files_by_member_and_model(tmp_path):
    ledger = BatchLedger(ledger_path(tmp_path / "llm.sqlite"))
    ledger.record_file("f1", "m1", 1, ["a", "b"])
    ledger.record_batch("f1", "b1")
    ledger.record_file("f2", "m1", 1, ["c"])  # its batch was never created
    ledger.record_file("f3", "m2", 1, ["a"])
    assert [(f.input_file_id, f.batch_id) for f in ledger.open_files(["a", "c"], "m1")] == [("f1", "b1"), ("f2", None)]
    ledger.mark_ended("f1", "completed", {"input_tokens": 1}, collected=True)
    ledger.forget("f2")
    assert ledger.open_files(["a", "b", "c"], "m1") == []
    ledger.close()
    assert (tmp_path / "llm.batches.sqlite").is_file()


def test_settings_and_the_batch_price():
    config = parse_llm_settings({"backend": "openai_batch", "model": MODEL, "prices": {"input_per_mtok": 10.0}})
    assert isinstance(config, OpenAIBatchSettings) and config.poll_interval_s == 30.0
    assert _llm(config) == f"openai_batch:{MODEL} at https://api.openai.com/v1 (poll 30s)"  # what `janus check` prints
    assert billed_prices(config).cost_usd(1_000_000, 0) == pytest.approx(5.0)
    sync = parse_llm_settings({"backend": "openai", "model": MODEL, "prices": {"input_per_mtok": 10.0}})
    assert billed_prices(sync).cost_usd(1_000_000, 0) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="poll_interval_s"):
        parse_llm_settings({"backend": "openai", "model": MODEL, "poll_interval_s": 1})


# --- against the simulated API ---------------------------------------------------------------------


@pytest.fixture
def api():
    with SimulatedAPI(batch_complete_after_s=0.6, latency_median_s=0.0, seed=1) as running:
        yield running


def test_end_to_end_answers_are_joined_by_custom_id_and_billed_at_the_batch_price(api, tmp_path):
    requests = questions(40) + [ChatRequest.of("json please", sampling=GREEDY, response_schema=SCHEMA)]
    requests.append(requests[0])  # the same request twice is submitted once
    engine = open_engine(settings(api), cache_path=tmp_path / "llm.sqlite")
    try:
        results = engine.complete(requests, desc="batch")
    finally:
        engine.close()
    assert all(r.ok for r in results)
    assert results[-2].parsed is not None and set(results[-2].parsed) == {"answer"}
    # The simulator shuffles its output file: each answer must still be its own request's.
    store = api._sim.store
    [batch] = store.batches.values()
    [output] = [store.files[batch.output_file_id].data.decode()]
    order = [json.loads(line)["custom_id"] for line in output.splitlines()]
    ids = [r.cache_key(engine.model_id) for r in requests]
    assert order != ids[: len(order)]
    by_id = {json.loads(line)["custom_id"]: json.loads(line) for line in output.splitlines()}
    for request, result in zip(requests, results):
        body = by_id[request.cache_key(engine.model_id)]["response"]["body"]
        assert result.text == body["choices"][0]["message"]["content"]
    assert api.stats()["batch_requests"] == 41
    usage = engine.usage
    assert usage.cost_usd == pytest.approx((usage.prompt_tokens * 5.0 + usage.completion_tokens * 15.0) / 1e6)
    assert usage.prompt_tokens == batch.usage["input_tokens"]


def test_a_small_file_limit_gives_several_batches_and_progress_counts_them(api, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(openai_batch, "MAX_REQUESTS_PER_FILE", 7)
    engine = open_engine(settings(api), cache_path=tmp_path / "llm.sqlite")
    try:
        results = engine.complete(questions(20), desc="answers")
    finally:
        engine.close()
    assert all(r.ok for r in results)
    assert [len(ids) for ids in batch_ids(api)] == [7, 7, 6]
    log = capsys.readouterr().err  # not a terminal: plain lines
    assert f"{MODEL} batches: 3/3 batch (100%)" in log and "every batch ended" in log
    assert "answers: 20/20 req (100%)" in log


def test_batch_progress_shows_the_server_counts_beside_the_batches():
    stream = io.StringIO()
    progress = RequestProgress(0, "m batches", stream=stream, unit="batch")
    progress.extend(2, "0/10 requests done in 2 open batch(es)")
    progress.advance(ChatResult("", completion_tokens=7))
    progress.extend(0, "4/5 requests done in 1 open batch(es)")
    progress.close()
    assert stream.getvalue().strip().startswith("m batches: 1/2 batch (50%), 7 tok")
    assert stream.getvalue().strip().endswith("; 4/5 requests done in 1 open batch(es)")


@pytest.mark.parametrize(
    ("fault", "first_status", "resent"),
    [
        # Error-file lines (status 500): only they go into the next batch.
        ({"batch_failure_fraction": 0.3}, "completed", lambda line: line.fails),
        # Expiry: the output holds what finished; only the unfinished go into the next batch.
        ({"batch_expire_fraction": 0.25}, "expired", lambda line: line.finishes_at is None),
    ],
    ids=["failed", "expired"],
)
def test_only_failed_or_unfinished_requests_are_resubmitted(tmp_path, fault, first_status, resent):
    with SimulatedAPI(batch_complete_after_s=0.4, latency_median_s=0.0, seed=2, **fault) as api:
        engine = open_engine(settings(api, max_rounds=8), cache_path=tmp_path / "llm.sqlite")
        try:
            results = engine.complete(questions(50))
        finally:
            engine.close()
        batches = list(api._sim.store.batches.values())
    assert batches[0].status == first_status and len(batches) >= 2 and all(r.ok for r in results)
    for before, after in zip(batches, batches[1:]):
        assert {line.custom_id for line in after.lines} == {line.custom_id for line in before.lines if resent(line)}


def test_failures_past_max_rounds_come_back_as_errors_and_are_not_cached(tmp_path):
    with SimulatedAPI(batch_complete_after_s=0.3, latency_median_s=0.0, batch_failure_fraction=1.0, seed=4) as api:
        engine = open_engine(settings(api, max_rounds=2), cache_path=tmp_path / "llm.sqlite")
        try:
            results = engine.complete(questions(5))
        finally:
            engine.close()
        assert api.stats()["batch_requests"] == 10  # two rounds of five
    assert all(not r.ok and "status 500" in (r.error or "") for r in results)
    assert engine.cache.path and sqlite3.connect(tmp_path / "llm.sqlite").execute(
        "SELECT COUNT(*) FROM completions"
    ).fetchone() == (0,)


def test_answers_cached_by_a_batch_run_are_served_to_a_sync_run(api, tmp_path):
    requests = questions(12)
    batch = open_engine(settings(api), cache_path=tmp_path / "llm.sqlite")
    try:
        batch.complete(requests)
    finally:
        batch.close()
    sync_settings = OpenAISettings(model=MODEL, base_url=api.base_url, api_key_env=KEY_ENV, timeout_s=10.0)
    sync = open_engine(sync_settings, cache_path=tmp_path / "llm.sqlite")
    try:
        assert sync.model_id == batch.model_id
        results = sync.complete(requests)
    finally:
        sync.close()
    assert all(r.cached for r in results)
    assert api.stats()["requests"] == 0  # no chat completion was sent


def test_admit_refuses_requests_before_they_go_into_a_batch_file(api, tmp_path):
    backend = open_engine(settings(api), cache_path=tmp_path / "llm.sqlite").backend
    got: dict[int, object] = {}
    asked: list[int] = []

    def admit(i: int) -> bool:
        asked.append(i)
        return i < 4

    backend.generate(questions(6), lambda i, r: got.__setitem__(i, r), admit=admit)
    # Refused requests get no result, and nothing after the first refusal is asked or sent.
    assert sorted(got) == [0, 1, 2, 3] and asked == [0, 1, 2, 3, 4]
    assert api.stats()["batch_requests"] == 4


def submit_as_a_killed_run_did(engine, requests: list[ChatRequest], record_batch: bool) -> None:
    """Upload and create a batch of `requests` as the backend does, the ledger recording the file,
    and the batch id when `record_batch` (else: killed between the create and its record)."""
    backend = engine.backend
    ids = [r.cache_key(engine.model_id) for r in requests]
    client = backend._client()
    data = b"".join(batch_line(cid, chat_body(r, MODEL)) for cid, r in zip(ids, requests))
    uploaded = client.files.create(file=("x.jsonl", data), purpose="batch")
    backend.ledger.record_file(uploaded.id, engine.model_id, 1, ids)
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    if record_batch:
        backend.ledger.record_batch(uploaded.id, batch.id)


def test_a_file_uploaded_but_not_recorded_as_a_batch_is_found_by_listing(api, tmp_path):
    """Killed between `POST /v1/batches` and recording its id: the next run finds the batch by
    its input file instead of submitting the requests again."""
    requests = questions(5)
    engine = open_engine(settings(api), cache_path=tmp_path / "llm.sqlite")
    submit_as_a_killed_run_did(engine, requests, record_batch=False)
    try:
        results = engine.complete(requests)
    finally:
        engine.close()
    assert all(r.ok for r in results)
    assert api.stats()["batches"] == 1 and api.stats()["batch_requests"] == 5


RUN_SCRIPT = """
import sys
from janus_align.config import OpenAIBatchSettings, Sampling
from janus_align.llm import ChatRequest, open_engine
base_url, cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = OpenAIBatchSettings(model="gpt-4o-mini", base_url=base_url, api_key_env="JANUS_TEST_OPENAI_KEY",
                             poll_interval_s=0.05, timeout_s=10.0)
sampling = Sampling(max_new_tokens=32, temperature=0.0, top_p=1.0)
requests = [ChatRequest.of(f"q {i}: say something", sampling=sampling, seed=i) for i in range(n)]
engine = open_engine(config, cache_path=cache)
results = engine.complete(requests)
assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
print("DONE", engine.usage.requests, flush=True)
engine.close()
"""


def test_sigkill_while_polling_then_rerun_submits_nothing_twice(tmp_path):
    n = 30
    with SimulatedAPI(batch_complete_after_s=4.0, latency_median_s=0.0, seed=5) as api:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        script = tmp_path / "run.py"
        # Three files of ten: MAX_REQUESTS_PER_FILE is lowered for the child before it runs.
        script.write_text("import janus_align.llm.openai_batch as b; b.MAX_REQUESTS_PER_FILE = 10\n" + RUN_SCRIPT)
        cache = tmp_path / "llm.sqlite"
        child = subprocess.Popen([sys.executable, str(script), api.base_url, str(cache), str(n)], env=env)
        deadline = time.monotonic() + 60
        while api.stats()["batches"] < 3 or not _recorded(cache, 3):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # polling: every batch submitted, none ended
        child.wait()
        assert api.stats()["batches"] == 3
        rerun = subprocess.run(
            [sys.executable, str(script), api.base_url, str(cache), str(n)], env=env, capture_output=True, text=True
        )
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert "DONE" in rerun.stdout
        stats = api.stats()
    assert stats["batches"] == 3 and stats["batch_requests"] == n  # nothing submitted twice
    ids = [cid for batch in batch_ids(api) for cid in batch]
    assert len(ids) == len(set(ids)) == n


def _recorded(cache: Path, batches: int) -> bool:
    """Whether the child's ledger holds `batches` created batches."""
    path = Path(ledger_path(cache))
    if not path.exists():
        return False
    try:
        with sqlite3.connect(path) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM batch_files WHERE batch_id IS NOT NULL").fetchone()
    except sqlite3.OperationalError:
        return False
    return count >= batches


def test_the_spending_cap_stops_before_the_batch_file_takes_the_request_that_crosses_it(api, tmp_path):
    """The cap counts each request's worst case at the batch price: 5 of 10 fit under it; the
    rest go out only once it is raised, and the 5 already answered are not sent again."""
    from janus_align.llm.engine import SpendingCapReached

    requests = questions(10)
    worst = billed_prices(settings(api)).cost_usd(requests[0].estimated_prompt_tokens(), GREEDY.max_new_tokens)
    engine = open_engine(settings(api, max_cost_usd=5.5 * worst), cache_path=tmp_path / "llm.sqlite", payer="teacher")
    try:
        with pytest.raises(SpendingCapReached, match="teacher.max_cost_usd"):
            engine.complete(requests)
    finally:
        engine.close()
    assert api.stats()["batch_requests"] == 5
    engine = open_engine(settings(api, max_cost_usd=None), cache_path=tmp_path / "llm.sqlite", payer="teacher")
    try:
        assert all(r.ok for r in engine.complete(requests))
        assert engine.usage.cached == 5
    finally:
        engine.close()
    assert api.stats()["batch_requests"] == 10


def test_a_batch_the_server_no_longer_knows_is_resubmitted_not_waited_for(api, tmp_path):
    """The ledger names a batch of another server or account (here: the simulator was reset)."""
    config = settings(api)
    engine = open_engine(config, cache_path=tmp_path / "llm.sqlite")
    ids = [r.cache_key(engine.model_id) for r in questions(4)]
    engine.backend.ledger.record_file("file-gone", engine.model_id, 1, ids)  # type: ignore[attr-defined]
    engine.backend.ledger.record_batch("file-gone", "batch-gone")  # type: ignore[attr-defined]
    try:
        assert all(r.ok for r in engine.complete(questions(4)))
    finally:
        engine.close()
    assert api.stats()["batch_requests"] == 4


def test_an_ended_batch_keeps_the_answers_of_ids_not_yet_asked_for_the_run_that_asks(api, tmp_path):
    """A killed run submitted 6 requests; its re-run asks only 3 of them at first (a stage's
    first pass): the other 3 are taken from the same batch later, not submitted again."""
    requests = questions(6)
    engine = open_engine(settings(api), cache_path=tmp_path / "llm.sqlite")
    submit_as_a_killed_run_did(engine, requests, record_batch=True)
    try:
        assert all(r.ok for r in engine.complete(requests[:3]))
        assert all(r.ok for r in engine.complete(requests[3:]))
    finally:
        engine.close()
    assert api.stats()["batches"] == 1 and api.stats()["batch_requests"] == 6


def test_a_batch_refused_for_the_enqueued_token_limit_waits_for_the_queue_and_costs_no_round(
    api, tmp_path, monkeypatch
):
    """OpenAI fails a batch at validation when the model's enqueued prompt tokens would pass the
    organization's limit. The simulator has no such limit, so its answer for the second of two
    batches is rewritten to that failure (a double of a fault we cannot cause on it): those
    requests go out again once the first batch ended, and max_rounds 1 still answers all."""
    from openai.types.batch import Errors
    from openai.types.batch_error import BatchError

    monkeypatch.setattr(openai_batch, "MAX_REQUESTS_PER_FILE", 5)
    make_client = openai_batch.OpenAIBatchBackend._client

    def client_with_a_full_queue(backend):
        client = make_client(backend)
        retrieve = client.batches.retrieve

        def refused_second(batch_id, **options):
            batch = retrieve(batch_id, **options)
            if batch_id != list(api._sim.store.batches)[1]:
                return batch
            full = Errors(data=[BatchError(code="token_limit_exceeded", message="Enqueued token limit reached.")])
            return batch.model_copy(update={"status": "failed", "errors": full, "output_file_id": None})

        client.batches.retrieve = refused_second  # type: ignore[method-assign]
        return client

    monkeypatch.setattr(openai_batch.OpenAIBatchBackend, "_client", client_with_a_full_queue)
    engine = open_engine(settings(api, max_rounds=1), cache_path=tmp_path / "llm.sqlite")
    try:
        results = engine.complete(questions(10))
    finally:
        engine.close()
    assert all(r.ok for r in results)
    first, second, again = api._sim.store.batches.values()
    assert {line.custom_id for line in again.lines} == {line.custom_id for line in second.lines}
    assert again.started >= first.started + api.settings.batch_complete_after_s  # after the queue drained
