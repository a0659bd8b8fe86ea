"""The simulated OpenAI API, driven by the real openai SDK over HTTP on 127.0.0.1.

Each test pins one behaviour the pipeline's backends rely on: schema-valid answers for the
pipeline's own schemas, the judges' verdict formats, usage and snapshot ids, the rate-limit
headers and 429 + Retry-After, and the Batch API's lifecycle (shuffled output, error file,
expiry with partial results, cancel, a bad input file).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any

import jsonschema
import openai
import pytest

from janus_align.bench.rubrics import rubric_schema
from janus_align.config import OpenAISettings, Sampling
from janus_align.evaluate.judge_prompt import JUDGE_SYSTEM, render_judge_prompt, verdict_schema
from janus_align.evaluate.verdicts import parse_verdict
from janus_align.llm import ChatRequest, open_engine
from janus_align.simulated_api import SimulatedAPI
from janus_align.simulated_api.limits import duration
from janus_align.synth.prompts import generated_preference_schema, sampled_preference_schema

FINAL = ("completed", "failed", "expired", "cancelled")
KEY_ENV = "JANUS_TEST_OPENAI_KEY"

# The shapes structured outputs use that the pipeline's schemas do not: a local $ref, enums of
# strings, bounded numbers, optional keys, arrays bounded both ways.
EXTRA_SCHEMA = {
    "$defs": {"tag": {"type": "string", "enum": ["a", "b", "c"]}},
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "minItems": 2, "maxItems": 4},
        "weight": {"type": "number", "minimum": 0.5, "maximum": 0.75},
        "count": {"type": "integer", "minimum": -3, "maximum": 3},
        "flag": {"type": "boolean"},
        "note": {"type": "string", "minLength": 30, "maxLength": 31},
        "nested": {
            "type": "object",
            "properties": {"x": {"type": ["string", "null"], "maxLength": 5}},
            "required": ["x"],
        },
    },
    "required": ["tags", "weight", "count", "nested", "note"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def api():
    with SimulatedAPI(latency_median_s=0.002, batch_complete_after_s=0.6, seed=7) as running:
        yield running


def client_for(api: SimulatedAPI, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.base_url, api_key="sim-key", **{"max_retries": 0, **options})


def ask(client: openai.OpenAI, prompt: str, **options: Any) -> Any:
    return client.chat.completions.create(
        model=options.pop("model", "gpt-4o"), messages=[{"role": "user", "content": prompt}], **options
    )


@pytest.mark.parametrize(
    "schema",
    [
        generated_preference_schema(3, 120, 300),
        sampled_preference_schema(120, 300),
        verdict_schema(256),
        rubric_schema(150, 200),
        EXTRA_SCHEMA,
    ],
    ids=["generated_preferences", "sampled_preferences", "verdict", "rubric", "refs_enums_numbers"],
)
def test_json_schema_answers_are_valid_under_the_schema(api, schema):
    client = client_for(api)
    response_format = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": False}}
    for index in range(20):
        completion = ask(client, f"instruction {index}", response_format=response_format)
        jsonschema.validate(json.loads(completion.choices[0].message.content), schema)


def test_judge_prompts_get_the_verdict_form_they_ask_for(api):
    client = client_for(api)
    rubric = {"criteria": "Is it clear?", **{f"score{n}_description": f"level {n}" for n in range(1, 6)}}
    absolute = render_judge_prompt("Explain tides.", "The moon pulls.", "Gravity of moon and sun.", rubric)
    scores = set()
    for index in range(15):
        completion = client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": f"{absolute} {index}"}],
        )
        score = parse_verdict(completion.choices[0].message.content)
        assert score in range(1, 6)
        scores.add(score)
    assert len(scores) > 1  # the verdicts vary, so aggregates are not degenerate
    single = ask(client, 'Rate the response strictly following this format: "[[rating]]", e.g. "Rating: [[5]]".')
    assert re.search(r"Rating: \[\[(\d+)\]\]$", single.choices[0].message.content)
    assert 1 <= int(re.findall(r"\[\[(\d+)\]\]", single.choices[0].message.content)[-1]) <= 10
    pairwise = ask(client, "Output your final verdict with a label: [[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]].")
    assert re.search(r"\[\[(A>>B|A>B|A=B|B>A|B>>A)\]\]$", pairwise.choices[0].message.content)


def test_free_text_usage_and_dated_snapshot(api):
    client = client_for(api)
    completion = ask(client, "Write a short note about rivers.", max_tokens=64)
    text = completion.choices[0].message.content
    assert text and not text.startswith("{") and "[RESULT]" not in text
    assert completion.model == "gpt-4o-2024-08-06"
    assert completion.usage.completion_tokens <= 64
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert ask(client, "x", model="my-finetune").model == "my-finetune"
    # Equal requests get equal answers (a seeded model, mostly): the cache tests rely on it.
    assert ask(client, "Write a short note about rivers.", max_tokens=64).choices[0].message.content == text


def test_the_pipeline_engine_gets_parsed_answers(api, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sim-key")
    settings = OpenAISettings(backend="openai", model="gpt-4o-mini", base_url=api.base_url, api_key_env=KEY_ENV)
    engine = open_engine(settings, cache_path=tmp_path / "llm.sqlite")
    schema = verdict_schema(64)
    results = engine.complete(
        [ChatRequest.of(f"grade {i}", sampling=Sampling(max_new_tokens=64), response_schema=schema) for i in range(8)]
    )
    for result in results:
        assert result.ok
        jsonschema.validate(result.parsed, schema)


def test_rate_limit_headers_announce_the_limits_in_openai_format():
    with SimulatedAPI(rpm=120, tpm=60_000, latency_median_s=0.001) as api:
        raw = client_for(api).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}], max_tokens=100
        )
        headers = raw.headers
        assert headers["x-ratelimit-limit-requests"] == "120"
        assert headers["x-ratelimit-limit-tokens"] == "60000"
        assert headers["x-ratelimit-remaining-requests"] == "119"
        assert 60_000 - 110 < int(headers["x-ratelimit-remaining-tokens"]) < 60_000 - 100  # prompt + max_tokens
        assert headers["x-ratelimit-reset-requests"] == "500ms"  # one request back at 2/s
        assert re.fullmatch(r"\d+ms", headers["x-ratelimit-reset-tokens"])
    assert [duration(s) for s in (0.02, 1, 6 * 60, 90.5, 0.0)] == ["20ms", "1s", "6m0s", "1m30.5s", "0ms"]


def test_over_the_request_limit_answers_429_with_retry_after():
    with SimulatedAPI(rpm=3, latency_median_s=0.001) as api:
        client = client_for(api)
        for index in range(3):
            ask(client, f"q{index}")
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, "one too many")
        response = caught.value.response
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert 15_000 <= int(response.headers["retry-after-ms"]) <= 20_000  # one request back at 3/min
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        stats = api.stats()
        assert (stats["requests"], stats["ok"], stats["rate_limited"]) == (4, 3, 1)


def test_over_the_token_limit_answers_429_and_a_retry_after_it_succeeds():
    with SimulatedAPI(tpm=60_000, latency_median_s=0.001) as api:  # 1,000 tokens back a second
        client = client_for(api, max_retries=2)
        ask(client, "first", max_tokens=59_500)  # takes all but ~490 of the minute's tokens
        started = time.monotonic()
        ask(client, "second", max_tokens=1_000)  # 429, the SDK waits retry-after-ms (~0.5 s), then it fits
        assert 0.3 < time.monotonic() - started < 3
        assert api.stats()["rate_limited"] >= 1


def batch_lines(count: int, model: str = "gpt-4o-mini", first: int = 0, **body: Any) -> bytes:
    rows = [
        {
            "custom_id": f"req-{index}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"question {index}"}], **body},
        }
        for index in range(first, first + count)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def submit(client: openai.OpenAI, data: bytes) -> Any:
    uploaded = client.files.create(file=("requests.jsonl", data), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(data)
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"stage": "t"}
    )


def wait(client: openai.OpenAI, batch_id: str) -> tuple[Any, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while True:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in FINAL or time.monotonic() > deadline:
            return batch, seen
        time.sleep(0.02)


def jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_batch_lifecycle_end_to_end_with_shuffled_output(api):
    client = client_for(api)
    schema = verdict_schema(64)
    response_format = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    batch = submit(client, batch_lines(40, response_format=response_format))
    assert batch.status == "validating" and batch.metadata == {"stage": "t"}
    batch, seen = wait(client, batch.id)
    assert seen == ["validating", "in_progress", "finalizing", "completed"][-len(seen) :]
    assert "in_progress" in seen
    assert batch.request_counts.total == 40 and batch.request_counts.completed == 40
    assert batch.error_file_id is None and batch.model == "gpt-4o-mini-2024-07-18"
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    lines = jsonl(client, batch.output_file_id)
    ids = [line["custom_id"] for line in lines]
    assert sorted(ids, key=lambda c: int(c.split("-")[1])) == [f"req-{i}" for i in range(40)]
    assert ids != sorted(ids, key=lambda c: int(c.split("-")[1]))  # no order to rely on
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        jsonschema.validate(json.loads(line["response"]["body"]["choices"][0]["message"]["content"]), schema)
    usage = batch.usage
    assert usage.input_tokens == sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in lines)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert any(listed.id == batch.id for listed in client.batches.list())


def test_failed_requests_are_in_the_error_file():
    with SimulatedAPI(batch_complete_after_s=0.4, batch_failure_fraction=0.3, seed=1) as api:
        client = client_for(api)
        batch, _ = wait(client, submit(client, batch_lines(50)).id)
        assert batch.status == "completed"
        outputs, errors = jsonl(client, batch.output_file_id), jsonl(client, batch.error_file_id)
        assert 5 <= len(errors) <= 25 and len(outputs) + len(errors) == 50
        assert batch.request_counts.failed == len(errors) and batch.request_counts.completed == len(outputs)
        assert {line["custom_id"] for line in outputs}.isdisjoint(line["custom_id"] for line in errors)
        assert all(line["response"]["status_code"] == 500 for line in errors)


def test_expiry_returns_the_part_that_finished():
    with SimulatedAPI(batch_complete_after_s=0.4, batch_expire_fraction=0.4, seed=2) as api:
        client = client_for(api)
        batch, seen = wait(client, submit(client, batch_lines(50)).id)
        assert batch.status == "expired" and batch.expired_at and "finalizing" not in seen
        outputs, errors = jsonl(client, batch.output_file_id), jsonl(client, batch.error_file_id)
        assert 0 < len(outputs) < 50 and len(outputs) + len(errors) == 50
        assert all(line["error"]["code"] == "batch_expired" and line["response"] is None for line in errors)
        assert batch.request_counts.completed == len(outputs)
        assert batch.usage.input_tokens > 0  # what finished is billed


def test_cancel_keeps_what_finished_and_cancelling_twice_is_a_conflict():
    with SimulatedAPI(batch_complete_after_s=2.0, seed=3) as api:
        client = client_for(api)
        batch = submit(client, batch_lines(200))
        time.sleep(0.9)  # past validating, part of the requests done
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at
        batch, _ = wait(client, batch.id)
        assert batch.status == "cancelled" and batch.cancelled_at
        outputs = jsonl(client, batch.output_file_id)
        assert 0 < len(outputs) < 200 and batch.request_counts.completed == len(outputs)
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(batch.id)


def test_a_bad_input_file_fails_the_batch_with_line_numbers(api):
    client = client_for(api)
    data = batch_lines(3) + batch_lines(1)  # req-0 twice
    batch, _ = wait(client, submit(client, data).id)
    assert batch.status == "failed" and batch.failed_at and batch.output_file_id is None
    assert [(error.code, error.line) for error in batch.errors.data] == [("duplicate_custom_id", 4)]
    two_models = batch_lines(1) + batch_lines(1, model="gpt-4o", first=1)
    batch, _ = wait(client, submit(client, two_models).id)
    assert batch.status == "failed" and batch.errors.data[0].code == "mismatched_model"
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-missing")


def test_stats_endpoint_reset_and_the_command_line():
    with SimulatedAPI(latency_median_s=0.001) as api:
        client = client_for(api)
        ask(client, "one")
        submit(client, batch_lines(4))
        stats = json.loads(urllib.request.urlopen(api.base_url.removesuffix("/v1") + "/_sim/stats").read())
        assert stats["requests"] == 1 and stats["batch_requests"] == 4 and stats["batches"] == 1
        assert stats["endpoints"]["POST /v1/chat/completions"] == 1 and stats["endpoints"]["POST /v1/files"] == 1
        assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0
        api.reset()
        assert api.stats()["requests"] == 0 and api.stats()["batches"] == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "janus_align.simulated_api", "--rpm", "60", "--latency-median", "0.001"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().split()[-1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
        raw = openai.OpenAI(base_url=base_url, api_key="k").chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "60"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_short_limit_window_enforces_the_rate_without_a_minute_of_burst():
    # 60 RPM quantized to a 5 s window: 5 at once, then 1 a second (OpenAI: "60,000 RPM may be
    # enforced as 1,000 requests per second"); a 60 s window would let 60 through at once.
    with SimulatedAPI(rpm=60, limit_window_s=5.0, latency_median_s=0.001) as api:
        client = client_for(api)
        for index in range(5):
            ask(client, f"q{index}")
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, "sixth")
        assert caught.value.response.headers["x-ratelimit-limit-requests"] == "60"
        assert int(caught.value.response.headers["retry-after-ms"]) <= 1000
