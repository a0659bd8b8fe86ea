"""MT-Bench and RealToxicityPrompts (issue 16, items 1-2) and `validate-data` for the evaluations' formats (item 8).

Toxicity services are loopback doubles (http.server on 127.0.0.1) speaking the Perspective API's
and OpenAI's moderations wire formats; the judge is the OpenAI-compatible loopback server; the
candidate in the stage tests is the ci profile's real (tiny, random) checkpoint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import REPO, run_janus
from janus_align import cli
from janus_align.config import OpenAISettings, Sampling
from janus_align.config.schema import MTBenchConfig, RealToxicityConfig, ToxicityScorer
from janus_align.errors import JanusError
from janus_align.evaluate import mt_bench
from janus_align.evaluate.eval_formats import VALIDATORS, FormatError, load_mt_bench, load_realtoxicity
from janus_align.evaluate.realtoxicity import distinct_n, toxicity_summary
from janus_align.evaluate.toxicity_scorers import ScorerError, toxicity_scores
from janus_align.llm import open_engine
from loopback_server import LoopbackServer

SAMPLES = REPO / "src" / "janus_align" / "default_data"
MT_SAMPLE = SAMPLES / "mt_bench" / "question.jsonl"
RTP_SAMPLE = SAMPLES / "realtoxicity" / "prompts.jsonl"
KEY_ENV = "JANUS_TEST_TOXICITY_KEY"
SECRET = "sekrit-key-123"


# ------------------------------------------------------------------------------------------
# Formats and `janus validate-data --kind`


def test_the_bundled_samples_are_valid_in_their_official_formats():
    questions = load_mt_bench(MT_SAMPLE)
    assert {q.category for q in questions} == {
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"
    }  # fmt: skip
    assert all(len(q.turns) == 2 for q in questions)
    assert all(q.reference and len(q.reference) == 2 for q in questions if q.needs_reference)
    prompts = load_realtoxicity(RTP_SAMPLE)
    assert len(prompts) >= 5 and all(p.text for p in prompts)


@pytest.mark.parametrize(
    ("kind", "content", "expected"),
    [
        ("mt_bench", '{"question_id": 1, "category": "math", "turns": ["a", "b"]}\n{"question_id": 2, "category": "x", "turns": ["only one"]}\n', ":2: key `turns` must be a list of 2 strings"),
        ("mt_bench", '{"question_id": 1, "category": "x", "turns": ["a", "b"]}\n{"question_id": 1, "category": "x", "turns": ["a", "b"]}\n', ":2: key `question_id` 1 repeats line 1"),
        ("mt_bench", '{"question_id": 1, "turns": ["a", "b"]}\n', ":1: key `category` missing"),
        ("mt_bench", '{"question_id": 1, "category": "math", "turns": ["a", "b"], "reference": [3]}\n', ":1: key `reference[0]` must be a string"),
        ("mt_bench", '{"question_id": 1, "category": "x", "turns": ["a", "b"]\n', ":1: broken JSON"),
        ("realtoxicity", '{"prompt": {"text": "ok"}}\n\n{"prompt": {"toxicity": 0.2}}\n', ":3: key `prompt.text` missing"),
        ("realtoxicity", '{"prompt": "just text"}\n', ":1: key `prompt` must be an object"),
        ("realtoxicity", '{"prompt": {"text": "a", "toxicity": 2}}\n', ":1: key `prompt.toxicity` must be null or a number in [0, 1]"),
        ("arena_hard", '{"question_id": "q1", "category": "c", "cluster": "k", "turns": [{"text": "hi"}]}\n', ":1: turns.0.content: Field required"),
        ("mt_bench", b'{"question_id": 1, "category": "x", "turns": ["a", "b"]}\n{"question_id": 2, "category": "caf\xe9"}\n', ":2: not UTF-8 text"),
        ("alpaca_eval", b'[{"instruction": "caf\xe9"}]', "not UTF-8 text"),
        ("alpaca_eval", '[{"instruction": "a", "output": "b", "generator": "g", "dataset": "d"},\n {"instruction": "", "output": "b", "generator": "g"}]', ": row 2: instruction: String should have at least 1 character"),
    ],
)  # fmt: skip
def test_broken_files_are_rejected_in_one_line_naming_line_and_key(tmp_path, capsys, kind, content, expected):
    path = tmp_path / ("input.json" if kind == "alpaca_eval" else "input.jsonl")  # AlpacaEval's set is a JSON list
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(JanusError) as caught:
        VALIDATORS[kind](path)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert cli.main(["validate-data", "--kind", kind, str(path)]) == 2
    assert expected in capsys.readouterr().err


def test_validate_data_accepts_the_official_files(tmp_path, capsys):
    # Shaped as FastChat's own lines: a stem question whose second reference is empty.
    official = tmp_path / "question.jsonl"
    lines = [
        {"question_id": 81, "category": "writing", "turns": ["Write a blog post.", "Rewrite it."]},
        {"question_id": 142, "category": "stem", "turns": ["Orbit?", "Edge cases?"], "reference": ["It grows.", ""]},
    ]
    official.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert cli.main(["validate-data", "--kind", "mt_bench", str(official)]) == 0
    assert "2 MT-Bench questions (stem 1, writing 1); 1 with a reference answer" in capsys.readouterr().out
    alpaca = tmp_path / "alpaca_eval.json"
    alpaca.write_text(
        json.dumps([{"instruction": "Say hi.", "output": "Hi!", "generator": "gpt4_turbo", "dataset": "oasst"}])
    )
    arena = tmp_path / "question.jsonl"
    arena.write_text(
        json.dumps({"question_id": "abc", "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": "Q?"}]})
        + "\n"
    )
    for kind, path in (
        ("mt_bench", MT_SAMPLE),
        ("realtoxicity", RTP_SAMPLE),
        ("alpaca_eval", alpaca),
        ("arena_hard", arena),
    ):
        assert cli.main(["validate-data", "--kind", kind, str(path)]) == 0
        assert f"valid {kind} file" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# MT-Bench: verdicts, prompts, judging


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("Good answer. Rating: [[8]]", 8.0),
        ("A [[3]] would be harsh; overall Rating: [[7]].", 7.0),  # the last one, not FastChat's first
        ("Rating: [[7.5]]", 7.5),
        ("Rating: [6]", 6.0),
        ("Rating: [[0]]", None),
        ("Rating: [[11]]", None),
        ("no verdict at all, 9/10", None),
        ("", None),
    ],
)
def test_the_rating_is_read_from_the_end(text, rating):
    assert mt_bench.parse_rating(text) == rating


def _questions():
    return {q.category: q for q in load_mt_bench(MT_SAMPLE)}


def test_math_is_judged_against_its_reference_and_turn_two_with_the_whole_conversation():
    q = _questions()
    math_q = q["math"]
    name, system, user = mt_bench.judge_prompt(mt_bench.OUR_PROMPTS, math_q, ["A1", "A2"], 1, math_q.reference)
    assert name == "single-math-v1" and math_q.reference[0] in user and "A1" in user and "A2" not in user
    name, system, user = mt_bench.judge_prompt(mt_bench.OUR_PROMPTS, math_q, ["A1", "A2"], 2, math_q.reference)
    assert name == "single-math-v1-multi-turn" and "second user question" in system
    assert [math_q.turns[0], "A1", math_q.turns[1], "A2", math_q.reference[1]] == [
        s for s in [math_q.turns[0], "A1", math_q.turns[1], "A2", math_q.reference[1]] if s in user
    ]
    assert user.index(math_q.turns[0]) < user.index(math_q.turns[1])
    name, _, user = mt_bench.judge_prompt(mt_bench.OUR_PROMPTS, q["writing"], ["A1", "A2"], 1, None)
    assert name == "single-v1" and "Reference" not in user
    # A reasoning question without any reference is judged with the general prompt (and counted).
    name, _, _ = mt_bench.judge_prompt(mt_bench.OUR_PROMPTS, q["reasoning"], ["A1", "A2"], 1, None)
    assert name == "single-v1"


def test_fastchat_judge_prompts_file_is_used_verbatim(tmp_path):
    lines = [
        {"name": name, "type": "single", "system_prompt": f"SYS {name}", "prompt_template": f"T {name} {{question_1}}" if "multi" in name else f"T {name} {{question}} {{answer}}"}
        for name in mt_bench.OUR_PROMPTS
    ] + [{"name": "pair-v2", "type": "pairwise", "system_prompt": "x", "prompt_template": "y"}]  # fmt: skip
    path = tmp_path / "judge_prompts.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    prompts = mt_bench.load_judge_prompts(path)
    name, system, user = mt_bench.judge_prompt(prompts, _questions()["writing"], ["ANSWER", "B"], 1, None)
    assert (system, user) == ("SYS single-v1", f"T single-v1 {_questions()['writing'].turns[0]} ANSWER")
    path.write_text(json.dumps(lines[0]))
    with pytest.raises(FormatError, match="no judge prompt named single-math-v1"):
        mt_bench.load_judge_prompts(path)


def _judge(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    if "### Assistant A" in user:
        return "The second answer is fine. Rating: [[6]]"
    if "UNREADABLE" in user:
        return "I would not know how to grade this."
    return "Clear and correct. Rating: [[8]]"


def _engine(server: LoopbackServer, tmp_path: Path, name: str):
    config = OpenAISettings(
        model=name, base_url=server.base_url, api_key_env="NO_KEY_NEEDED", max_retries=0, timeout_s=5
    )
    return open_engine(config, cache_path=tmp_path / f"{name}.sqlite")


def _judge_all(engine, questions, answers, errors, config, seed):
    """Every turn judged with our prompts and the questions' own references."""
    references = mt_bench.references_for(questions, config)
    return mt_bench.judge_answers(engine, questions, answers, errors, references, mt_bench.OUR_PROMPTS, config, seed)


def test_both_turns_are_answered_in_context_and_judged_per_turn_and_category(tmp_path):
    questions = load_mt_bench(MT_SAMPLE)[:4]
    config = MTBenchConfig(enabled=True, constrained=False, max_reasks=1)
    with LoopbackServer() as server:
        candidate = _engine(server, tmp_path, "candidate")
        answers, errors = mt_bench.answer_questions(candidate, questions, config, seed=1)
        second_turns = [r.body for r in server.received if r.body["messages"][-1]["content"] == questions[0].turns[1]]
        candidate.close()
    assert errors == [None] * 4 and all(len(a) == 2 and all(a) for a in answers)
    # Turn 2 carries the first exchange (user, assistant) before the second question.
    roles = [m["role"] for m in second_turns[0]["messages"]]
    assert roles == ["user", "assistant", "user"] and second_turns[0]["messages"][1]["content"] == answers[0][0]
    assert second_turns[0]["temperature"] == config.category_temperature[questions[0].category]
    answers[1][0] = "UNREADABLE"
    with LoopbackServer(answer=_judge) as server:
        judge = _engine(server, tmp_path, "judge")
        rows = _judge_all(judge, questions, answers, errors, config, 1)
        judge.close()
    by_turn = {(r.question_id, r.turn): r for r in rows}
    unreadable = by_turn[(questions[1].question_id, 1)]
    assert unreadable.score is None and unreadable.attempts == 2 and "no [[rating]]" in unreadable.error
    summary = mt_bench.summarize(questions, rows)
    assert summary["turn_1"] == 8.0 and summary["turn_2"] == 6.0
    assert summary["unscored"] == 1 and summary["judgments"] == 8
    assert summary["score"] == pytest.approx((8 * 3 + 6 * 4) / 7)
    assert summary["per_category_turn"][questions[0].category] == {"turn_1": 8.0, "turn_2": 6.0}


def test_constrained_verdicts_are_read_as_rating_text():
    from janus_align.llm import ChatResult

    result = ChatResult('{"explanation": "ok", "rating": 9}', parsed={"explanation": "ok", "rating": 9})
    assert mt_bench.parse_rating(mt_bench.rating_text(result)) == 9.0
    schema = mt_bench.rating_schema(64)
    assert schema["properties"]["rating"]["enum"] == list(range(1, 11))


# ------------------------------------------------------------------------------------------
# RealToxicityPrompts: metrics and the toxicity services


def test_distinct_n_and_toxicity_metrics_follow_the_paper_definitions():
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["a b c", "a b c"], 3) == pytest.approx(1 / 2)
    assert distinct_n(["one"], 2) is None
    summary = toxicity_summary([[0.1, 0.7, 0.2], [0.3, 0.4], [0.5]], threshold=0.5)
    assert summary["avg_max_toxicity"] == pytest.approx((0.7 + 0.4 + 0.5) / 3)
    assert summary["toxicity_probability"] == pytest.approx(2 / 3)


class _Service:
    """A loopback toxicity service: Perspective's comments:analyze and OpenAI's /v1/moderations."""

    def __init__(self, faults: list[int] | None = None):
        self.requests: list[dict[str, Any]] = []
        self.faults = list(faults or [])

    @staticmethod
    def score(text: str) -> float:
        return 0.9 if "awful" in text else 0.1

    def handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any], dict[str, str]]:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        url = urlsplit(handler.path)
        self.requests.append(
            {"path": url.path, "query": parse_qs(url.query), "body": body, "headers": dict(handler.headers)}
        )
        if self.faults:
            return self.faults.pop(0), {"error": {"message": "slow down"}}, {"Retry-After": "0"}
        if url.path == "/v1alpha1/comments:analyze":
            if parse_qs(url.query).get("key") != [SECRET]:
                return 403, {"error": {"code": 403, "message": "API key not valid."}}, {}
            value = self.score(body["comment"]["text"])
            return 200, {"attributeScores": {"TOXICITY": {"summaryScore": {"value": value, "type": "PROBABILITY"}}}}, {}
        if url.path == "/v1/moderations":
            if handler.headers.get("Authorization") != f"Bearer {SECRET}":
                return 401, {"error": {"message": "Incorrect API key provided"}}, {}
            results = [
                {"flagged": self.score(t) > 0.5, "category_scores": {"harassment": self.score(t), "violence": 0.2}}
                for t in body["input"]
            ]
            return 200, {"id": "modr-1", "model": body["model"], "results": results}, {}
        return 404, {"error": "no such path"}, {}


@contextmanager
def serving(service: _Service) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            status, payload, headers = service.handle(self)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _scorer(base_url: str, backend: str, **extra: Any) -> ToxicityScorer:
    return ToxicityScorer(backend=backend, base_url=base_url, api_key_env=KEY_ENV, requests_per_s=1000, **extra)


def test_perspective_scores_each_text_retries_429_and_skips_empty_texts(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    service = _Service(faults=[429])
    with serving(service) as url:
        scores = toxicity_scores(_scorer(url, "perspective"), ["a nice day", "", "an awful person"])
    assert scores == [0.1, 0.0, 0.9]
    analyzed = [r for r in service.requests if r["path"] == "/v1alpha1/comments:analyze"]
    assert len(analyzed) == 3  # one 429, then one per non-empty text
    assert analyzed[-1]["body"]["requestedAttributes"] == {"TOXICITY": {}}


def test_moderations_batches_and_reads_a_category_or_the_highest(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    service = _Service()
    with serving(service) as url:
        base = f"{url}/v1"
        texts = ["fine", "awful", "also fine"]
        assert toxicity_scores(_scorer(base, "openai_moderations", batch_size=2), texts) == [0.2, 0.9, 0.2]
        assert toxicity_scores(_scorer(base, "openai_moderations", category="harassment"), texts) == [0.1, 0.9, 0.1]
        with pytest.raises(ScorerError, match="no category 'toxicity'.*harassment"):
            toxicity_scores(_scorer(base, "openai_moderations", category="toxicity"), texts)
    assert [len(r["body"]["input"]) for r in service.requests[:2]] == [2, 1]
    assert service.requests[0]["body"]["model"] == "omni-moderation-latest"


def test_a_missing_or_wrong_key_fails_in_one_line_without_showing_the_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ScorerError, match=f"\\${KEY_ENV}, which is not set"):
        toxicity_scores(_scorer("http://127.0.0.1:9", "perspective"), ["x"])
    monkeypatch.setenv(KEY_ENV, "wrong-" + SECRET)
    with serving(_Service()) as url:
        for backend, base in (("perspective", url), ("openai_moderations", f"{url}/v1")):
            with pytest.raises(ScorerError) as caught:
                toxicity_scores(_scorer(base, backend), ["x"])
            assert "HTTP 40" in str(caught.value) and SECRET not in str(caught.value)


# ------------------------------------------------------------------------------------------
# The stages, on the ci profile's real checkpoint


def _overlay(project: Path, text: str) -> None:
    (project / "profiles" / "evals.yaml").write_text(text)
    run_janus(project, "use-profile", "evals")


def test_disabled_stages_only_write_a_metrics_file_saying_so(tmp_path, monkeypatch, capsys):
    from janus_align.config import Params
    from janus_align.evaluate import realtoxicity

    monkeypatch.chdir(tmp_path)
    for stage, module in (("mt_bench", mt_bench), ("realtoxicity", realtoxicity)):
        assert module.run(Params(), "base") == {"model": "base", "enabled": False}
        assert f"{stage} base: off" in capsys.readouterr().out
        path = tmp_path / "metrics" / stage / "base.json"
        assert json.loads(path.read_text()) == {"model": "base", "enabled": False}


@pytest.mark.slow
def test_mt_bench_stage_answers_with_the_real_model_and_writes_fastchat_files(ci_project):
    with LoopbackServer(answer=_judge) as server:
        _overlay(
            ci_project,
            "judge:\n  llm:\n    backend: openai\n    model: judge\n"
            f"    base_url: {server.base_url}\n    api_key_env: NO_KEY_NEEDED\n    max_retries: 0\n"
            "evals:\n  mt_bench:\n    enabled: true\n    max_questions: 3\n    constrained: false\n"
            "    sampling: {max_new_tokens: 8, temperature: 0.7, top_p: 1.0, repetition_penalty: 1.0}\n",
        )
        done = run_janus(ci_project, "mt_bench", "--model", "base")
    assert "mt_bench base: score" in done.stdout
    metrics = json.loads((ci_project / "metrics" / "mt_bench" / "base.json").read_text())
    assert metrics["questions"] == 3 and metrics["turn_1"] == 8.0 and metrics["turn_2"] == 6.0
    assert 6.0 <= metrics["ci_low"] <= metrics["score"] <= metrics["ci_high"] <= 8.0
    answers = [json.loads(line) for line in (ci_project / "artifacts/eval/mt_bench/base/answers.jsonl").open()]
    assert [len(a["choices"][0]["turns"]) for a in answers] == [2, 2, 2]
    judged = [json.loads(line) for line in (ci_project / "artifacts/eval/mt_bench/base/judgments.jsonl").open()]
    assert {j["judge"][1] for j in judged} >= {"single-v1", "single-v1-multi-turn"}


@pytest.mark.slow
def test_realtoxicity_stage_continues_scores_and_measures_fluency_and_diversity(ci_project):
    service = _Service()
    with serving(service) as url:
        _overlay(
            ci_project,
            "evals:\n  realtoxicity:\n    enabled: true\n    max_prompts: 2\n    samples_per_prompt: 3\n"
            f"    scorer:\n      backend: perspective\n      base_url: {url}\n      api_key_env: {KEY_ENV}\n"
            "      requests_per_s: 1000.0\n",
        )
        done = run_janus(ci_project, "realtoxicity", "--model", "base", **{KEY_ENV: SECRET})
    assert SECRET not in done.stdout + done.stderr
    metrics = json.loads((ci_project / "metrics" / "realtoxicity" / "base.json").read_text())
    assert metrics["prompts"] == 2 and metrics["continuations"] == 6
    rows = [json.loads(line) for line in (ci_project / "artifacts/eval/realtoxicity/base/continuations.jsonl").open()]
    assert [len(r["generations"]) for r in rows] == [3, 3] and rows[0]["prompt"]["text"]
    # Each continuation carries the service's score of its own text (empty ones 0, unasked).
    per_prompt = [[g["toxicity"] for g in r["generations"]] for r in rows]
    assert per_prompt == [
        [_Service.score(g["text"]) if g["text"].strip() else 0.0 for g in r["generations"]] for r in rows
    ]
    expected = toxicity_summary(per_prompt, threshold=0.5)
    assert metrics["avg_max_toxicity"] == pytest.approx(expected["avg_max_toxicity"])
    assert metrics["toxicity_probability"] == pytest.approx(expected["toxicity_probability"])
    assert metrics["perplexity"] > 1.0 and 0.0 < metrics["dist_2"] <= 1.0
    assert len(service.requests) == 6 - metrics["empty_continuations"]


def test_the_report_shows_the_enabled_evaluations_beside_the_bench(tmp_path, monkeypatch):
    from janus_align.evaluate import report

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics" / "mt_bench").mkdir(parents=True)
    (tmp_path / "metrics" / "realtoxicity").mkdir(parents=True)
    mt = {"enabled": True, "judge_model": "judge-x", "score": 7.25, "ci_low": 6.5, "ci_high": 8.0}
    mt |= {"turn_1": 7.5, "turn_2": 7.0, "unscored": 1}
    mt |= {"judgments": 16, "per_category": {"math": 6.0, "writing": 8.5}}
    (tmp_path / "metrics/mt_bench/sft.json").write_text(json.dumps(mt))
    (tmp_path / "metrics/mt_bench/base.json").write_text(json.dumps({"model": "base", "enabled": False}))
    rtp = {"enabled": True, "avg_max_toxicity": 0.256, "toxicity_probability": 0.061, "perplexity": 14.58}
    rtp |= {"dist_2": 0.93, "dist_3": 0.95, "prompts": 6, "samples_per_prompt": 25, "scorer": "perspective"}
    (tmp_path / "metrics/realtoxicity/sft.json").write_text(json.dumps(rtp))
    found = report.other_evaluations(["base", "sft"])
    assert set(found["mt_bench"]) == {"sft"} and set(found["realtoxicity"]) == {"sft"}
    tables = report.other_evaluation_tables(found)
    header, rows = tables["MT-Bench (1-10, judge judge-x)"]
    assert rows == [["sft", "7.25", "[6.50, 8.00]", "7.50", "7.00", "1/16", "6.00", "8.50"]] and header[-2:] == [
        "math",
        "writing",
    ]
    assert tables["RealToxicityPrompts"][1][0][:3] == ["sft", "0.256", "0.061"]
    assert report.other_evaluation_tables({}) == {}


def test_janus_check_names_the_toxicity_key_when_the_scorer_needs_one(monkeypatch):
    from janus_align.config import Params
    from janus_align.plan import describe_plan, missing_api_keys

    monkeypatch.delenv(KEY_ENV, raising=False)
    assert "MT-Bench off" in describe_plan(Params()) and missing_api_keys(Params()) == []
    scorer = ToxicityScorer(backend="perspective", api_key_env=KEY_ENV)
    params = Params().model_copy(
        update={
            "evals": Params().evals.model_copy(update={"realtoxicity": RealToxicityConfig(enabled=True, scorer=scorer)})
        }
    )
    assert any(f"${KEY_ENV}" in line for line in missing_api_keys(params))
    monkeypatch.setenv(KEY_ENV, SECRET)
    assert missing_api_keys(params) == [] and "RealToxicityPrompts on" in describe_plan(params)


@pytest.mark.slow
def test_a_local_judge_under_constrained_decoding_always_gives_a_readable_rating(ci_base_project, tmp_path):
    """The default setup: judge.llm a local checkpoint, the verdict JSON {explanation, rating}."""
    from janus_align.config import TransformersSettings

    checkpoint = str(ci_base_project / "artifacts" / "models" / "base")
    settings = TransformersSettings(model=checkpoint, batch_size=8)
    questions = load_mt_bench(MT_SAMPLE)[:2]
    config = MTBenchConfig(
        enabled=True,
        sampling=Sampling(max_new_tokens=6, temperature=0.7, top_p=1.0),
        judge_sampling=Sampling(max_new_tokens=40, temperature=0.0, top_p=1.0),
    )
    engine = open_engine(settings, cache_path=tmp_path / "llm.sqlite")
    try:
        answers, errors = mt_bench.answer_questions(engine, questions, config, seed=3)
        rows = _judge_all(engine, questions, answers, errors, config, 3)
    finally:
        engine.close()
    assert errors == [None, None] and len(rows) == 4
    assert all(row.score in {float(n) for n in range(1, 11)} and "Rating: [[" in row.judgment for row in rows)
