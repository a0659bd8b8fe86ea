"""The judge: its prompt (golden file), the one verdict parser, what happens when judging fails,
and every candidate judged together in one batch per attempt.

Failure tests run an openai-backend judge against a real HTTP server on 127.0.0.1 that answers
500s or garbage, so the engine, the SDK and the re-ask logic all run for real.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench_samples import official_rows, set_params, write_jsonl
from conftest import make_project, run_janus
from janus_align.bench.schema import bench_item
from janus_align.cli import build_parser
from janus_align.config import OpenAISettings, Params, Sampling
from janus_align.config.schema import JudgeConfig
from janus_align.errors import JanusError
from janus_align.evaluate import judge, scoring
from janus_align.evaluate.judge import candidate_names
from janus_align.evaluate.judge_prompt import JUDGE_SYSTEM, judge_instruction, render_judge_prompt
from janus_align.evaluate.judging import judge_candidates
from janus_align.evaluate.official_evaluation import official_evaluation
from janus_align.evaluate.responses import Response, load_responses
from janus_align.evaluate.rows import Judgment
from janus_align.evaluate.verdicts import feedback_of, parse_verdict
from janus_align.llm import open_engine
from janus_align.records import read_rows
from janus_align.records import write_jsonl as write_jsonl_rows
from janus_align.seeding import derive_seed
from loopback_server import Fault, LoopbackServer

GOLDEN = Path(__file__).parent / "golden"
KEY_ENV = "JANUS_TEST_JUDGE_KEY"


# ------------------------------------------------------------------------------------------
# The parser


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Feedback: Clear and vivid. [RESULT] 4", 4),
        ("Feedback: Clear and vivid. [RESULT] (4)", 4),
        ("Feedback: Clear and vivid. [RESULT]: 4", 4),
        ("Feedback: Clear and vivid. [RESULT] [4]", 4),
        ("Feedback: Clear and vivid. **[RESULT]** 4", 4),
        ("Feedback: Clear and vivid. [Result] 2", 2),
        ("Feedback: fine [RESULT] 4/5", 4),
        ("Feedback: fine [RESULT] 4 out of 5", 4),
        ("Feedback: fine [RESULT] score of 2", 2),
        ("Feedback: fine\nScore: 4", 4),
        ("Feedback: fine\n**Score:** 4.", 4),
        ("The response is fine overall. 4/5", 4),
        ("The response is fine overall, I give it 4 out of 5.", 4),
        ("Feedback: fine [RESULT] 3</s>", 3),
        ("Feedback: fine [RESULT] 3\n\nI hope this feedback helps.", 3),
        ("[RESULT] 1", 1),
        ("[RESULT] 5", 5),
    ],
)
def test_parse_verdict_accepts_the_common_variants(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        # The feedback quotes scores; the verdict at the end wins.
        ("Feedback: A score of 5 would need a story; this is a 2/5 attempt at best. [RESULT] 3", 3),
        ("Feedback: It covers 3 of the 5 hazards and 4 out of 5 steps. Score: 2", 2),
        ('Feedback: The format "[RESULT] 5" was not earned here. [RESULT] 2', 2),
        # A number that only appears inside the feedback is not a verdict.
        ("Feedback: It covers 3 of the 5 hazards, so it deserves 4/5 but rambles on.", None),
        ("Feedback: Response 2 of 5 in the batch; no grade given.", None),
        # Numbers outside 1..5 (and non-integers) are no verdict, not clamped.
        ("Feedback: excellent [RESULT] 7", None),
        ("Feedback: terrible [RESULT] 0", None),
        ("Feedback: hmm [RESULT] 4.5", None),
        ("Feedback: perfect [RESULT] 10/10", None),
        ("Score: -1", None),
        # The last verdict is out of range: no falling back to an earlier one.
        ("Feedback: first [RESULT] 4, on reflection [RESULT] 9", None),
        # No verdict at all.
        ("Feedback: The response is vivid but long.", None),
        ("[RESULT] (an integer number between 1 and 5)", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_verdict_ignores_feedback_numbers_and_rejects_bad_ones(text, verdict):
    assert parse_verdict(text) == verdict


def test_feedback_is_the_text_before_the_verdict_without_its_label():
    assert feedback_of("Feedback: Vivid, but misses two hazards. [RESULT] 3") == "Vivid, but misses two hazards."
    assert feedback_of("Feedback: ok\n**Score:** 4") == "ok"
    assert feedback_of("no verdict here") == "no verdict here"


# ------------------------------------------------------------------------------------------
# The prompt


def _sample_item(**overrides):
    row = {**official_rows(1)[0], **overrides}
    return bench_item(row, "sample")


GOLDEN_RUBRIC = {
    "criteria": "Does the response explain with a vivid, concrete scene?",
    "score_descriptions": {
        "1": "No imagery at all.",
        "2": "One generic comparison.",
        "3": "A brief example, mostly abstract.",
        "4": "A concrete scene carries most of it.",
        "5": "A vivid scene makes every idea concrete.",
    },
}


def test_judge_prompt_matches_the_golden_file():
    item = _sample_item(
        system="You are a gardener who teaches through stories.",
        prompt="How do I grow tomatoes on a balcony?",
        reference_answer="Picture a sunny corner in May: a deep pot, rich soil, a stake...",
        rubrics=[GOLDEN_RUBRIC] * 4,
    )
    user = render_judge_prompt(
        judge_instruction(item, show_system=False),
        "Use a big pot and water daily.",
        item.reference_answer,
        item.rubrics[0],
    )
    rendered = f"[system]\n{JUDGE_SYSTEM}\n\n[user]\n{user}\n"
    golden = GOLDEN / "judge_prompt.txt"
    if os.environ.get("JANUS_UPDATE_GOLDEN"):
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")


def test_judge_prompt_has_the_prometheus_sections_in_order_and_one_rubric_as_indented_json():
    item = _sample_item()
    user = render_judge_prompt(item.prompt, "RESPONSE-TEXT", item.reference_answer, item.rubrics[1])
    headers = [
        "###Task Description:",
        "###The instruction to evaluate:",
        "###Response to evaluate:",
        "###Reference Answer (Score 5):",
        "###Score Rubrics:",
        "###Feedback:",
    ]
    positions = [user.index(h) for h in headers]
    assert positions == sorted(positions)
    assert json.dumps(item.rubrics[1].as_official(), indent=4) in user
    assert json.dumps(item.rubrics[0].as_official(), indent=4) not in user
    assert "[RESULT] (an integer number between 1 and 5)" in user


def test_the_judge_sees_the_system_message_only_when_asked():
    item = _sample_item()
    assert judge_instruction(item, show_system=False) == item.prompt
    assert judge_instruction(item, show_system=True) == f"{item.system}\n{item.prompt}"


# ------------------------------------------------------------------------------------------
# Judging against a real server that fails


def _items(count: int = 2):
    return [bench_item(row, f"row {i}", i) for i, row in enumerate(official_rows(count))]


def _judge_engine(base_url: str, tmp_path: Path):
    config = OpenAISettings(model="judge", base_url=base_url, api_key_env=KEY_ENV, timeout_s=2.0, max_retries=0)
    return open_engine(config, cache_path=tmp_path / "llm.sqlite")


def use_loopback_judge(project, base_url: str, llm_extra: str = "", judge_extra: str = "") -> None:
    """Point the project's judge at an OpenAI-compatible loopback server (a profile overlay)."""
    overlay = (
        f"judge:\n  llm:\n    backend: openai\n    model: judge\n    base_url: {base_url}\n"
        f"    api_key_env: {KEY_ENV}\n    max_retries: 0\n{llm_extra}  max_reasks: 1\n{judge_extra}"
    )
    (project / "profiles" / "loopback.yaml").write_text(overlay)
    run_janus(project, "use-profile", "loopback")


def _judge_config(**overrides) -> JudgeConfig:
    llm = OpenAISettings(model="judge", sampling=Sampling(max_new_tokens=64, temperature=1.0))
    return JudgeConfig(llm=llm, **{"repeats": 1, "max_reasks": 2, "constrained": False, **overrides})


def _scripted_answer(body: dict) -> str:
    """Garbage for the response "GARBAGE", a verdict of 4 for everything else."""
    user = body["messages"][-1]["content"]
    if "GARBAGE-RESPONSE" in user:
        return "I think this is quite nice, 10 points for effort!"
    return "Feedback: The response uses a clear scene. [RESULT] 4"


def test_unparseable_verdicts_are_reasked_then_unscored_never_zero(tmp_path):
    items = _items(2)
    responses = {
        items[0].id: Response(items[0].id, "GOOD-RESPONSE"),
        items[1].id: Response(items[1].id, "GARBAGE-RESPONSE"),
    }
    with LoopbackServer(answer=_scripted_answer) as server:
        engine = _judge_engine(server.base_url, tmp_path)
        rows = judge_candidates(engine, items, {"m": responses}, _judge_config(max_reasks=2), seed=7)["m"]
        asked = server.count()
    good = [r for r in rows if r.id == items[0].id]
    bad = [r for r in rows if r.id == items[1].id]
    assert [r.verdict for r in good] == [4, 4, 4, 4]
    assert all(r.verdict is None and r.attempts == 3 for r in bad)  # 1 ask + 2 re-asks each
    assert all("10 points" in r.raw and r.error == "no verdict in the judge's answer" for r in bad)
    assert len({r.seed for r in bad}) == 4 and asked == 4 + 4 * 3
    summary = scoring.summarize(rows, items, responses)
    assert summary["overall"] == 4.0  # the unscored item is left out, not averaged in as 0
    assert summary["unscored"] == 4 and summary["unscored_rate"] == 0.5
    official = official_evaluation(items, responses, rows)
    assert official[items[0].id]["score"] == [4, 4, 4, 4]
    assert official[items[1].id]["score"] == [None, None, None, None]
    assert official[items[1].id]["feedback"] == [None, None, None, None]


def test_judge_calls_answered_with_500_neither_crash_nor_score_zero(tmp_path):
    items = _items(2)
    responses = {item.id: Response(item.id, "GOOD-RESPONSE") for item in items}
    with LoopbackServer(answer=_scripted_answer) as server:
        # Every call about the first item fails on every try; the second item is judged normally.
        first_prompts = [
            render_judge_prompt(items[0].prompt, "GOOD-RESPONSE", items[0].reference_answer, rubric)
            for rubric in items[0].rubrics
        ]
        for prompt in first_prompts:
            server.script(*[Fault.status_code(500)] * 3, prompt=prompt)
        rows = judge_candidates(_judge_engine(server.base_url, tmp_path), items, {"m": responses}, _judge_config(), 7)[
            "m"
        ]
    failed = [r for r in rows if r.id == items[0].id]
    assert all(r.verdict is None and r.call_failed and "500" in r.error for r in failed)
    assert all(r.verdict == 4 for r in rows if r.id == items[1].id)
    summary = scoring.summarize(rows, items, responses)
    assert summary["overall"] == 4.0 and summary["failed_calls"] == 4 and summary["unscored"] == 4


def test_one_broken_response_body_re_asks_only_that_request(tmp_path):
    """A 200 whose body is not JSON fails that call alone: 20 verdicts cost 21 requests, not a re-asked batch."""
    items = _items(5)
    responses = {item.id: Response(item.id, "GOOD-RESPONSE") for item in items}
    with LoopbackServer(answer=_scripted_answer, latency_s=0.05) as server:
        broken = render_judge_prompt(items[2].prompt, "GOOD-RESPONSE", items[2].reference_answer, items[2].rubrics[1])
        server.script(Fault.broken_body(), prompt=broken)
        rows = judge_candidates(_judge_engine(server.base_url, tmp_path), items, {"m": responses}, _judge_config(), 7)[
            "m"
        ]
        received = server.counts_by_prompt()
    assert len(rows) == 20 and all(r.verdict == 4 for r in rows)
    assert sum(received.values()) == 21 and received[broken] == 2
    reasked = [r for r in rows if r.attempts == 2]
    assert [(r.id, r.rubric_index) for r in reasked] == [(items[2].id, 1)]


def _ignores_response_format(body: dict) -> str:
    """A server that ignores `response_format`: it answers the JSON output rule with prose and no
    verdict, and the free-text rule with a `[RESULT]`."""
    prompt = body["messages"][-1]["content"]
    return "Looks fine to me." if '"score":' in prompt else "Feedback: fine. [RESULT] 4"


def test_a_server_that_ignores_response_format_gets_the_free_text_verdict_and_every_request_counts(tmp_path):
    """Constrained judging against a server that ignores the schema: after the first answers show
    it, re-asks use the free-text protocol; each verdict costs 2 requests and its row says 2."""
    items = _items(5)
    responses = {item.id: Response(item.id, "GOOD-RESPONSE") for item in items}
    with LoopbackServer(answer=_ignores_response_format) as server:
        engine = _judge_engine(server.base_url, tmp_path)
        rows = judge_candidates(engine, items, {"m": responses}, _judge_config(constrained=True), 7)["m"]
        asked = server.count()
    assert len(rows) == 20 and all(r.verdict == 4 for r in rows)
    assert asked == 40 and all(r.attempts == 2 for r in rows)  # every request a verdict cost is recorded


class _BrokenHandler(BaseHTTPRequestHandler):
    """Answers every request 200 with a body that is not JSON at all."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html>upstream proxy error</html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_server_answering_non_json_bodies_leaves_every_verdict_unscored(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        items = _items(1)
        responses = {items[0].id: Response(items[0].id, "GOOD-RESPONSE")}
        engine = _judge_engine(f"http://127.0.0.1:{server.server_address[1]}/v1", tmp_path)
        rows = judge_candidates(engine, items, {"m": responses}, _judge_config(max_reasks=1), 7)["m"]
    finally:
        server.shutdown()
        server.server_close()
    assert len(rows) == 4 and all(r.verdict is None for r in rows)
    assert scoring.summarize(rows, items, responses)["overall"] is None


def test_failed_generations_are_not_judged_and_count_as_unscored(tmp_path):
    items = _items(2)
    responses = {
        items[0].id: Response(items[0].id, "GOOD-RESPONSE"),
        items[1].id: Response(items[1].id, "", "APIError"),
    }
    with LoopbackServer(answer=_scripted_answer) as server:
        engine = _judge_engine(server.base_url, tmp_path)
        rows = judge_candidates(engine, items, {"m": responses}, _judge_config(repeats=2), 7)["m"]
        assert server.count() == 4 * 2  # only the first item, twice
    skipped = [r for r in rows if r.id == items[1].id]
    assert len(skipped) == 8 and all(r.verdict is None and r.attempts == 0 for r in skipped)
    assert all(r.error == "generation failed: APIError" for r in skipped)


def test_a_responses_file_with_a_renamed_key_fails_naming_its_file_and_line(tmp_path):
    """`response` renamed to `output`: an error naming file:line (or the official file's id), not
    an item silently left unjudged as "no response"."""
    ours = write_jsonl(
        tmp_path / "base.jsonl",
        [{"id": "a", "model": "base", "response": "hi", "error": None}, {"id": "b", "model": "base", "output": "hi"}],
    )
    with pytest.raises(JanusError, match=r"base\.jsonl:2: (response|output)"):
        load_responses(ours)
    official = tmp_path / "gpt_responses.json"
    official.write_text(json.dumps({"a": {"response": "hello"}, "b": {"output": "hello", "reward": 0.5}}))
    with pytest.raises(JanusError, match=r"gpt_responses\.json: id 'b': response: Field required"):
        load_responses(official)


def test_judgments_are_written_and_read_back_as_typed_rows(tmp_path):
    items = _items(1)
    responses = {items[0].id: Response(items[0].id, "GOOD-RESPONSE")}
    with LoopbackServer(answer=_scripted_answer) as server:
        rows = judge_candidates(_judge_engine(server.base_url, tmp_path), items, {"m": responses}, _judge_config(), 7)
    written = write_jsonl_rows(tmp_path / "m.jsonl", rows["m"])
    assert written == 4 and read_rows(tmp_path / "m.jsonl", Judgment) == rows["m"]


# ------------------------------------------------------------------------------------------
# Every candidate in one batch


class _Recording:
    """The real engine, with the requests of each `complete` call written down."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    def complete(self, requests, desc="requests"):
        self.calls.append(list(requests))
        return self.engine.complete(requests, desc=desc)

    def reject(self, requests, reason):
        return self.engine.reject(requests, reason)


def _answer_of(request) -> str:
    """The judged response inside a judge request (the text of the prompt's response section)."""
    user = request.messages[-1]["content"]
    return user.split("###Response to evaluate:\n", 1)[1].split("\n\n###Reference Answer", 1)[0]


def test_every_candidate_is_judged_in_one_engine_call_per_attempt_as_if_alone(tmp_path):
    items = _items(3)
    ids = [item.id for item in items]
    candidates = {
        "a": {i: Response(i, f"GOOD-RESPONSE of a on {i}") for i in ids},
        "b": {ids[0]: Response(ids[0], "GOOD-RESPONSE of b"), ids[1]: Response(ids[1], "GARBAGE-RESPONSE of b")},
        "ext": {
            ids[0]: Response(ids[0], "GARBAGE-RESPONSE of ext"),
            ids[1]: Response(ids[1], "", "APIError"),
            ids[2]: Response(ids[2], "GOOD-RESPONSE of ext"),
        },
    }
    config = _judge_config(max_reasks=2)
    with LoopbackServer(answer=_scripted_answer) as server:
        engine = _Recording(_judge_engine(server.base_url, tmp_path / "together"))
        together = judge_candidates(engine, items, candidates, config, seed=7)
        alone = {
            name: judge_candidates(
                _judge_engine(server.base_url, tmp_path / name), items, {name: responses}, config, 7
            )[name]
            for name, responses in candidates.items()
        }
    # The first ask of all 3 x 4 + 2 x 4 + 2 x 4 judged rubrics is one call; each verdict re-ask
    # (the two garbage answers' 4 rubrics each) is one more, over both candidates at once.
    assert [len(call) for call in engine.calls] == [28, 8, 8]
    for call, owners in zip(engine.calls, [{"a", "b", "ext"}, {"b", "ext"}, {"b", "ext"}]):
        assert {_answer_of(r).split(" of ")[1].split(" on ")[0] for r in call} == owners
    assert list(together) == ["a", "b", "ext"] and together == alone
    assert all(row.model == name for name, rows in together.items() for row in rows)
    # Seeds do not depend on the candidate: (item, rubric, repeat, attempt) only.
    assert all(
        row.seed == derive_seed(7, "judge", row.id, row.rubric_index, row.repeat, row.attempts - 1)
        for rows in together.values()
        for row in rows
        if row.attempts
    )
    assert [r.verdict for r in together["b"]] == [4] * 4 + [None] * 8
    assert [r.error for r in together["b"][8:]] == ["no response for this item"] * 4
    assert [r.attempts for r in together["ext"]] == [3] * 4 + [0] * 4 + [1] * 4


def test_candidates_with_the_same_answer_share_one_request_each(tmp_path):
    items = _items(2)
    same = {item.id: Response(item.id, "GOOD-RESPONSE") for item in items}
    with LoopbackServer(answer=_scripted_answer) as server:
        rows = judge_candidates(
            _judge_engine(server.base_url, tmp_path), items, {"a": same, "b": dict(same)}, _judge_config(), 7
        )
        asked = server.count()
    assert asked == 2 * 4  # not 2 x 2 x 4
    assert [r.model_copy(update={"model": "-"}) for r in rows["a"]] == [
        r.model_copy(update={"model": "-"}) for r in rows["b"]
    ]
    assert all(r.verdict == 4 for r in rows["a"] + rows["b"])


def test_judge_cli_takes_any_number_of_models_and_defaults_to_every_candidate():
    parser = build_parser()
    assert parser.parse_args(["judge"]).models is None
    assert parser.parse_args(["judge", "--model", "sft", "--model", "dpo"]).models == ["sft", "dpo"]
    params = Params.model_validate({"generate": {"candidates": ["base", "sft"], "external": ["gpt-x"]}})
    assert candidate_names(params) == ["base", "sft", "gpt-x"]
    assert candidate_names(params, ["dpo", "dpo"]) == ["dpo"]


def test_a_missing_responses_file_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "artifacts/eval/responses/base.jsonl", [{"id": "0", "response": "x"}])
    params = Params.model_validate({"generate": {"candidates": ["base", "sft"], "external": []}})
    with pytest.raises(
        JanusError, match=r"judge: artifacts/eval/responses/sft\.jsonl missing \(run `janus generate --model sft`"
    ):
        judge.run(params)
    assert not (tmp_path / "artifacts/eval/judgments").exists()


@pytest.mark.slow
def test_janus_judge_judges_every_candidate_in_one_stage_run_with_a_nested_run_each(tmp_path):
    """`janus judge` with no --model: every candidate and external model, one stage run, one
    nested `judge-<model>` run per candidate with its metrics; the per-model files as before."""
    project = make_project(tmp_path / "project")
    rows = official_rows(2)
    write_jsonl(project / "artifacts" / "bench" / "bench.jsonl", rows)
    names = ["base", "sft", "gpt-x"]
    set_params(project, "generate", candidates=names[:2], external=names[2:])
    for name in names:
        answer = "GARBAGE-RESPONSE" if name == "sft" else f"GOOD-RESPONSE {name}"
        write_jsonl(
            project / "artifacts" / "eval" / "responses" / f"{name}.jsonl",
            [{"id": r["id"], "source": r["source"], "model": name, "response": answer} for r in rows],
        )
    with LoopbackServer(answer=_scripted_answer) as server:
        use_loopback_judge(
            project, server.base_url, llm_extra="    timeout_s: 2\n", judge_extra="  constrained: false\n"
        )
        done = run_janus(project, "judge", timeout=300, check=False)
    # sft's verdicts are all unreadable: every file is written, then the stage fails naming it.
    assert done.returncode == 2
    assert "judge sft: 100.0% of verdicts unscored (8/8), above judge.max_unscored_rate 99.0%" in done.stderr
    assert "artifacts/eval/judgments/sft.jsonl" in done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("judge ")][-3:] == [
        f"judge {name}" for name in names
    ]
    for name in names:
        metrics = json.loads((project / "metrics" / "eval" / f"{name}.json").read_text())
        assert metrics["model"] == name and metrics["overall"] == (None if name == "sft" else 4.0)
        assert (project / f"artifacts/eval/official/{name}_evaluation.json").is_file()
        assert len((project / f"artifacts/eval/judgments/{name}.jsonl").read_text().splitlines()) == 8

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["janus"], output_format="list")
    stage = [r for r in runs if r.data.tags.get("stage") == "judge" and "candidate" not in r.data.tags]
    assert [r.info.run_name for r in stage] == ["judge"]
    nested = {r.info.run_name: r for r in runs if r.info.run_name.startswith("judge-")}
    assert set(nested) == {f"judge-{name}" for name in names}
    for name in names:
        run = nested[f"judge-{name}"]
        assert run.data.tags["mlflow.parentRunId"] == stage[0].info.run_id and run.data.tags["candidate"] == name
        assert run.data.metrics["judgments"] == 8 and run.data.metrics.get("overall") == (
            None if name == "sft" else 4.0
        )


@pytest.mark.slow
def test_judge_stage_survives_a_judge_that_only_answers_500(tmp_path):
    """`janus judge` with every judge call failing: no crash, all verdicts unscored and recorded,
    rate printed, then the stage fails (judge.max_unscored_rate) naming the judgments file."""
    project = make_project(tmp_path / "project")
    rows = official_rows(2)
    write_jsonl(project / "artifacts" / "bench" / "bench.jsonl", rows)
    write_jsonl(
        project / "artifacts" / "eval" / "responses" / "base.jsonl",
        [{"id": r["id"], "source": r["source"], "model": "base", "response": "an answer"} for r in rows],
    )
    with LoopbackServer() as server:
        server.script(*[Fault.status_code(500)] * 1000)
        use_loopback_judge(project, server.base_url, llm_extra="    timeout_s: 2\n")
        done = run_janus(project, "judge", "--model", "base", timeout=300, check=False)
    assert "unscored 8/8 verdicts (100.0%), 8 failed judge call(s)" in done.stdout
    assert done.returncode == 2 and "judge base: 100.0% of verdicts unscored" in done.stderr
    assert "Traceback" not in done.stderr
    metrics = json.loads((project / "metrics" / "eval" / "base.json").read_text())
    assert metrics["overall"] is None and metrics["unscored_rate"] == 1.0
    judgments = [
        json.loads(line) for line in (project / "artifacts/eval/judgments/base.jsonl").read_text().splitlines()
    ]
    assert len(judgments) == 8 and all(j["verdict"] is None and j["attempts"] == 2 for j in judgments)
    official = json.loads((project / "artifacts/eval/official/base_evaluation.json").read_text())
    assert official[rows[0]["id"]]["score"] == [None] * 4
    assert sorted(p.name for p in (project / "metrics" / "eval").iterdir()) == ["base.json"]  # --model: only base


@pytest.mark.slow
def test_janus_evaluate_judges_official_files_against_an_official_bench(tmp_path):
    """`janus evaluate` on the released layouts: a JSON bench list without ids and with the old
    `rubric` key, and responses as the official {id: {"response": ...}} map."""
    project = make_project(tmp_path / "project")
    rows = official_rows(3, with_ids=False)
    for row in rows:
        row["rubric"] = row.pop("rubrics")
    bench = tmp_path / "Multifaceted-Bench.json"
    bench.write_text(json.dumps(rows))
    responses = tmp_path / "gpt-x_responses.json"
    responses.write_text(json.dumps({"0": {"response": "GOOD-RESPONSE"}, "1": {"response": "GARBAGE-RESPONSE"}}))
    with LoopbackServer(answer=_scripted_answer) as server:
        use_loopback_judge(project, server.base_url, judge_extra="  constrained: false\n")
        out = tmp_path / "eval-out"
        done = run_janus(project, "evaluate", "--bench", str(bench), "--responses", str(responses), "--out", str(out))
        bad = tmp_path / "other_responses.json"
        bad.write_text(json.dumps({"999": {"response": "x"}}))
        refused = run_janus(project, "evaluate", "--bench", str(bench), "--responses", str(bad), check=False)
    assert "1 bench item(s) have no response" in done.stdout
    assert "judge gpt-x: overall 4.000 over 1/3 items; unscored 8/12 verdicts (66.7%)" in done.stdout
    official = json.loads((out / "gpt-x_evaluation.json").read_text())
    assert official["0"]["score"] == [4, 4, 4, 4] and official["0"]["response"] == "GOOD-RESPONSE"
    assert official["1"]["score"] == [None] * 4 and official["2"]["response"] is None
    scores = json.loads((out / "gpt-x_scores.json").read_text())
    assert scores["overall"] == 4.0 and scores["unscored"] == 8
    assert len((out / "gpt-x_judgments.jsonl").read_text().splitlines()) == 12
    assert refused.returncode == 2 and "'999'" in refused.stderr and "Traceback" not in refused.stderr
