"""The pairwise judge (evaluate/pairwise_judge.py) and its three evaluations: Fig. 3 on the bench,
AlpacaEval 2.0 and Arena-Hard-Auto, against a loopback OpenAI-compatible judge (and generator)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench_samples import official_rows, set_params, write_jsonl
from conftest import REPO, make_project, run_janus
from janus_align.config import OpenAISettings, Sampling
from janus_align.config.schema import JudgeConfig
from janus_align.evaluate import pairwise_scores as ps
from janus_align.evaluate.pairwise_judge import (
    GRADED,
    OUTCOMES,
    PAIRWISE_SYSTEM,
    PREFERENCE,
    Game,
    PairTask,
    judge_games,
    parse_pairwise,
    position_consistency,
)
from janus_align.evaluate.pairwise_sets import validate_alpaca_eval, validate_arena_hard
from janus_align.llm import open_engine
from janus_align.records import RecordError
from loopback_server import LoopbackServer

KEY_ENV = "JANUS_TEST_PAIRWISE_KEY"
DEFAULT_DATA = REPO / "src" / "janus_align" / "default_data"


def _sections(body: dict) -> tuple[str, str]:
    user = body["messages"][-1]["content"]
    a = user.split("###Response A:\n", 1)[1].split("\n\n###Response B:", 1)[0]
    b = user.split("###Response B:\n", 1)[1].split("\n\n###Explanation:", 1)[0]
    return a, b


def fair_judge(body: dict) -> str:
    """Prefers the answer that says STRONG, wherever it is shown; a generator answers the rest."""
    if body["messages"][0]["content"] != PAIRWISE_SYSTEM:
        return "ANSWER " + ("STRONG " * 3 if "tips" in body["messages"][-1]["content"] else "weak")
    a, b = _sections(body)
    if "GARBAGE" in a + b:
        return "I cannot decide, both are [[fine]]."
    if "STRONG" in a and "STRONG" not in b:
        return "A quotes [[B>A]] wrongly. Verdict: [[A>B]]"
    if "STRONG" in b and "STRONG" not in a:
        return "Explanation: B is better. Verdict: [[B>A]]"
    return (
        "Explanation: both answer well. [[BOTH GOOD]]" if "BOTH GOOD" in body["messages"][-1]["content"] else "[[A=B]]"
    )


def first_judge(body: dict) -> str:
    """Always prefers whatever it reads first: position bias at its worst."""
    return "Verdict: [[A>B]]"


def _config(**overrides) -> JudgeConfig:
    llm = OpenAISettings(model="judge", sampling=Sampling(max_new_tokens=64, temperature=1.0))
    return JudgeConfig(llm=llm, **{"max_reasks": 2, "constrained": False, **overrides})


def _engine(base_url: str, tmp_path: Path):
    config = OpenAISettings(model="judge", base_url=base_url, api_key_env=KEY_ENV, timeout_s=2.0, max_retries=0)
    return open_engine(config, cache_path=tmp_path / "llm.sqlite")


def _tasks(answers: list[tuple[str, str]]) -> list[PairTask]:
    return [PairTask(f"q{i}", f"question {i}", "janus", "other", a, b) for i, (a, b) in enumerate(answers)]


def _game(outcome: str | None, item: str = "q", order: str = "candidate_first", mine: int = 10, theirs: int = 10):
    return Game(
        id=item, candidate="janus", opponent="other", order=order, verdict=outcome, outcome=outcome,
        explanation="", raw="", error=None, attempts=1, seed=0, candidate_chars=mine, opponent_chars=theirs,
        protocol="p", judge_model="j", prompt_hash="h", template_version="t",
    )  # fmt: skip


# --- verdicts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "protocol", "label"),
    [
        ("[[A>B]] at first, but on reflection [[B>>A]]", GRADED, "B>>A"),
        ("Verdict: [[ A>>B ]].", GRADED, "A>>B"),
        ("they tie [[a=b]]", PREFERENCE, "A=B"),
        ("both fine [[Both  Good]]", OUTCOMES, "BOTH GOOD"),
        ("[[BOTH BAD]]", OUTCOMES, "BOTH BAD"),
        ("[[A>>B]]", PREFERENCE, None),  # not a label of this protocol
        ("A is better: A>B", GRADED, None),  # no brackets, no verdict
        ("", GRADED, None),
    ],
)
def test_the_verdict_is_the_last_label_of_the_protocol(text, protocol, label):
    assert parse_pairwise(text, protocol) == label


def test_swapping_the_order_swaps_a_and_b_but_not_the_symmetric_outcomes():
    assert [GRADED.swap(x) for x in GRADED.labels] == ["B>>A", "B>A", "A=B", "A>B", "A>>B"]
    assert [OUTCOMES.swap(x) for x in OUTCOMES.labels] == ["B>A", "A>B", "BOTH GOOD", "BOTH BAD"]


# --- the judging loop against a loopback judge ---------------------------------------------------


def test_both_orders_are_judged_and_outcomes_read_from_the_candidates_side(tmp_path):
    tasks = _tasks([("STRONG answer", "weak"), ("weak", "STRONG answer"), ("fine", "fine")])
    with LoopbackServer(answer=fair_judge) as server:
        games = judge_games(_engine(server.base_url, tmp_path), tasks, OUTCOMES, _config(), 7, "both")
    assert [(g.id, g.order) for g in games] == [
        (f"q{i}", o) for i in range(3) for o in ("candidate_first", "opponent_first")
    ]
    assert [g.outcome for g in games] == ["A>B", "A>B", "B>A", "B>A", "BOTH GOOD", "BOTH GOOD"]
    assert [g.verdict for g in games[:2]] == ["A>B", "B>A"]  # as written: A is whatever was shown first
    assert games[0].explanation.startswith("A quotes") and games[0].raw.endswith("[[A>B]]")
    assert position_consistency(games) == {"pairs": 3, "consistent": 3, "rate": 1.0}


def test_a_judge_that_prefers_the_first_answer_is_position_inconsistent(tmp_path):
    tasks = _tasks([("STRONG", "weak"), ("weak", "STRONG")])
    with LoopbackServer(answer=first_judge) as server:
        games = judge_games(_engine(server.base_url, tmp_path), tasks, GRADED, _config(), 7, "both")
    assert position_consistency(games) == {"pairs": 2, "consistent": 0, "rate": 0.0}
    assert ps.win_rate(games) == 50.0


def test_answers_without_a_label_are_reasked_then_unscored_never_a_tie(tmp_path):
    tasks = _tasks([("GARBAGE", "weak"), ("STRONG", "weak")])
    with LoopbackServer(answer=fair_judge) as server:
        games = judge_games(_engine(server.base_url, tmp_path), tasks, PREFERENCE, _config(max_reasks=2), 7, "both")
        asked = server.count()
    bad = [g for g in games if g.id == "q0"]
    assert all(g.outcome is None and g.attempts == 3 and "[[fine]]" in g.raw for g in bad)
    assert all(g.error == "no verdict label in the judge's answer" for g in bad)
    assert asked == 2 + 2 * 3 and ps.win_rate(games) == 100.0  # the unscored item is left out


def test_a_missing_answer_is_not_judged_and_says_whose(tmp_path):
    tasks = [PairTask("q0", "question", "janus", "other", None, "weak")]
    with LoopbackServer(answer=fair_judge) as server:
        games = judge_games(_engine(server.base_url, tmp_path), tasks, PREFERENCE, _config(), 7, "random")
        assert server.count() == 0
    assert len(games) == 1 and games[0].error == "no answer from janus" and games[0].attempts == 0


def test_the_randomized_order_is_drawn_per_item_recorded_and_repeatable(tmp_path):
    tasks = _tasks([("STRONG", "weak")] * 40)
    with LoopbackServer(answer=fair_judge) as server:
        games = judge_games(_engine(server.base_url, tmp_path), tasks, PREFERENCE, _config(), 7, "random")
        again = judge_games(_engine(server.base_url, tmp_path / "b"), tasks, PREFERENCE, _config(), 7, "random")
    orders = [g.order for g in games]
    assert len(games) == 40 and orders == [g.order for g in again]
    assert 10 < orders.count("candidate_first") < 30
    assert all(g.outcome == "A>B" for g in games)  # a fair judge: the shown order does not matter


def test_constrained_verdicts_are_json_with_an_enum_of_the_labels(tmp_path):
    tasks = _tasks([("x", "y")])
    with LoopbackServer() as server:  # answers every schema with its first allowed value
        games = judge_games(_engine(server.base_url, tmp_path), tasks, GRADED, _config(constrained=True), 7, "both")
        body = next(iter(server.counts_by_body()))
    schema = json.loads(body)["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["verdict"]["enum"] == list(GRADED.labels)
    assert [g.verdict for g in games] == ["A>>B", "A>>B"] and [g.outcome for g in games] == ["A>>B", "B>>A"]


# --- scores ---------------------------------------------------------------------------------------


def test_the_logistic_fit_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(200), rng.normal(size=200)])
    y = (rng.random(200) < 1 / (1 + np.exp(-(0.5 + 1.5 * x[:, 1])))).astype(float)
    ours = ps.fit_logistic(x, y, np.ones(200), ridge=1.0)
    theirs = LogisticRegression(C=1.0, fit_intercept=False, tol=1e-10, max_iter=1000).fit(x, y).coef_[0]
    assert np.allclose(ours, theirs, atol=1e-4)


def test_length_control_discounts_wins_that_come_only_from_longer_answers():
    # The candidate wins exactly the items where it wrote more: raw 50 %, but at equal length
    # the GLM finds no advantage left; with equal lengths throughout, LC is the raw win rate.
    lengthy = [_game("A>B" if i % 2 else "B>A", f"q{i}", mine=100 + 200 * (i % 2), theirs=200) for i in range(40)]
    raw, lc = ps.win_rate(lengthy), ps.length_controlled(lengthy)
    assert raw == 50.0 and ps.length_fit(lengthy)[1] > 1.0 and 40 < lc < 60
    longer_wins = [
        _game("A>B" if i % 4 else "B>A", f"q{i}", mine=100 + 100 * (i % 4 != 0), theirs=150) for i in range(40)
    ]
    assert ps.win_rate(longer_wins) == 75.0 and ps.length_controlled(longer_wins) < 65  # every win came from length
    equal = [_game("A>B" if i % 4 else "B>A", f"q{i}") for i in range(40)]
    assert ps.length_controlled(equal) == pytest.approx(75.0, abs=0.1)


def test_bradley_terry_scores_ties_at_50_and_counts_a_strong_verdict_three_times():
    ties = [_game("A=B", f"q{i}") for i in range(10)]
    assert ps.bradley_terry(ties)["score"] == pytest.approx(50.0, abs=1e-6)
    assert ps.bradley_terry(ties)["elo"] == pytest.approx(1000.0, abs=1e-4)
    mild = [_game("A>B", "q0"), _game("B>A", "q1"), _game("A>B", "q2"), _game("B>A", "q3"), _game("A>B", "q4")]
    strong = [_game("A>>B" if g.outcome == "A>B" else "B>A", g.id) for g in mild]
    assert ps.bradley_terry(mild)["score"] == pytest.approx(60.0, abs=0.5)
    assert ps.bradley_terry(strong)["score"] == pytest.approx(100 * 9 / 11, abs=0.5)


def test_style_control_removes_the_advantage_of_markdown_and_length():
    plain, styled = "a plain answer", "## Title\n\n- **one**\n- **two**\n- three, with many more words"
    games, styles = [], {}
    for i in range(40):
        fancy = i % 2 == 0
        games.append(_game("A>B" if fancy else "B>A", f"q{i}"))
        styles[f"q{i}"] = (ps.style_features(styled if fancy else plain), ps.style_features(plain if fancy else styled))
    assert ps.style_features(styled) == {"length": len(styled), "headers": 1.0, "lists": 3.0, "bold": 2.0}
    controlled = ps.bradley_terry(games, styles)
    assert ps.bradley_terry(games)["score"] == pytest.approx(50.0, abs=1e-6)
    assert controlled["score"] == pytest.approx(50.0, abs=1.0) and controlled["style_length"] > 0.5


def test_bootstrap_intervals_hold_the_estimate_and_resample_whole_items():
    games = [
        _game("A>B" if i % 3 else "B>A", f"q{i}", order=o)
        for i in range(30)
        for o in ("candidate_first", "opponent_first")
    ]
    low, high = ps.bootstrap(games, ps.win_rate, 500, 0.95, 1)
    assert low < ps.win_rate(games) < high and high - low < 50
    assert ps.bootstrap([], ps.win_rate, 10, 0.95, 1) == (None, None)


# --- the official files ---------------------------------------------------------------------------


def test_the_bundled_sample_sets_are_valid_official_files():
    assert validate_alpaca_eval(DEFAULT_DATA / "alpaca_eval" / "alpaca_eval.json") == 5
    assert validate_arena_hard(DEFAULT_DATA / "arena_hard" / "question.jsonl") == 5
    assert validate_arena_hard(DEFAULT_DATA / "arena_hard" / "model_answer" / "janus-sample-baseline.jsonl") == 5


def test_broken_official_files_fail_naming_file_row_and_key(tmp_path):
    rows = json.loads((DEFAULT_DATA / "alpaca_eval" / "alpaca_eval.json").read_text())
    rows[2] = {"instruction": rows[2]["instruction"], "generator": "x", "dataset": "oasst"}  # no output
    bad = tmp_path / "alpaca_eval.json"
    bad.write_text(json.dumps(rows))
    with pytest.raises(RecordError, match=re.escape(f"{bad}: row 3: output: Field required")):
        validate_alpaca_eval(bad)
    bad.write_text(json.dumps([rows[0], rows[0]]))
    with pytest.raises(RecordError, match=r"row 2: instruction: duplicate"):
        validate_alpaca_eval(bad)
    questions = (DEFAULT_DATA / "arena_hard" / "question.jsonl").read_text().splitlines()
    broken = tmp_path / "question.jsonl"
    broken.write_text("\n".join([questions[0], questions[1].replace('"turns"', '"turn"')]) + "\n")
    with pytest.raises(RecordError, match=re.escape(f"{broken}:2: turns: Field required")):
        validate_arena_hard(broken)
    answers = (DEFAULT_DATA / "arena_hard" / "model_answer" / "janus-sample-baseline.jsonl").read_text().splitlines()
    broken.write_text(answers[0] + "\n" + answers[1].replace('"content"', '"text"') + "\n")
    with pytest.raises(RecordError, match=re.escape(f"{broken}:2: choices.0.turns.0.content: Field required")):
        validate_arena_hard(broken)


# --- the stages -----------------------------------------------------------------------------------


def _loopback_project(tmp_path: Path, base_url: str, external: list[str]) -> Path:
    """A ci project whose judge and external models are the loopback server."""
    project = make_project(tmp_path / "project")
    llm = {"backend": "openai", "model": "judge", "base_url": base_url, "api_key_env": KEY_ENV, "max_retries": 0}
    set_params(project, "judge", llm=llm, max_reasks=1, constrained=False)
    params = yaml.safe_load((project / "params.yaml").read_text())
    external_llm = {**params["generate"]["external_llm"], "base_url": base_url, "api_key_env": KEY_ENV}
    set_params(project, "generate", external=external, external_llm=external_llm)
    return project


@pytest.mark.slow
def test_the_pairwise_stage_writes_fig3_outcomes_with_position_consistency(tmp_path):
    with LoopbackServer(answer=fair_judge) as server:
        project = _loopback_project(tmp_path, server.base_url, [])
        rows = official_rows(4)
        write_jsonl(project / "artifacts" / "bench" / "bench.jsonl", rows)
        for name, answer in (("sft", "STRONG answer"), ("base", "weak answer")):
            write_jsonl(
                project / "artifacts" / "eval" / "responses" / f"{name}.jsonl",
                [{"id": r["id"], "response": answer if i else "same"} for i, r in enumerate(rows)],
            )
        done = run_janus(project, "pairwise", timeout=300)
    assert "pairwise sft_vs_base: win 75.0% / both good 25.0% / both bad 0.0% / loss 0.0% over 8 games" in done.stdout
    metrics = json.loads((project / "metrics" / "pairwise.json").read_text())["pairs"]["sft_vs_base"]
    assert metrics["tie_plus_win"] == 100.0 and metrics["position_consistency"]["rate"] == 1.0
    assert metrics["win_ci"]["ci_low"] <= 75.0 <= metrics["win_ci"]["ci_high"]
    games = (project / "artifacts" / "eval" / "pairwise" / "sft_vs_base.jsonl").read_text().splitlines()
    assert len(games) == 8 and {json.loads(g)["order"] for g in games} == {"candidate_first", "opponent_first"}

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    [run] = [
        r for r in mlflow.search_runs(experiment_names=["janus"], output_format="list") if r.info.run_name == "pairwise"
    ]
    assert (
        run.data.metrics["sft_vs_base.win"] == 75.0 and run.data.metrics["sft_vs_base.position_consistency.rate"] == 1.0
    )
    assert run.data.params["evals.pairwise.show_system"] == "True"
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "pairwise")}
    assert logged == {"pairwise/pairwise.json", "pairwise/sft_vs_base.jsonl"}


@pytest.mark.slow
def test_alpaca_eval_writes_outputs_alpaca_eval_reads_and_both_win_rates(tmp_path):
    with LoopbackServer(answer=fair_judge) as server:
        project = _loopback_project(tmp_path, server.base_url, ["gpt-x"])
        run_janus(project, "alpaca_eval", "--model", "gpt-x", timeout=300)
    outputs = json.loads((project / "artifacts" / "eval" / "alpaca_eval" / "gpt-x_outputs.json").read_text())
    reference = json.loads((DEFAULT_DATA / "alpaca_eval" / "alpaca_eval.json").read_text())
    assert [o["instruction"] for o in outputs] == [r["instruction"] for r in reference]
    assert {tuple(o) for o in outputs} == {("instruction", "output", "generator", "dataset")}
    assert {o["generator"] for o in outputs} == {"gpt-x"} and outputs[0]["output"].startswith("ANSWER STRONG")
    metrics = json.loads((project / "metrics" / "alpaca_eval" / "gpt-x.json").read_text())
    assert metrics["win_rate"] == 60.0 and metrics["unscored"] == 0 and metrics["games"] == 5  # 1 win, 4 ties
    assert metrics["lc_win_rate"] is not None and metrics["lc_win_rate_ci"]["ci_low"] is not None
    assert metrics["reference"] == ["janus_sample_reference"]


@pytest.mark.slow
def test_arena_hard_judges_both_orders_and_reports_bradley_terry_with_style_control(tmp_path):
    with LoopbackServer(answer=fair_judge) as server:
        project = _loopback_project(tmp_path, server.base_url, ["gpt-x"])
        done = run_janus(project, "arena_hard", "--model", "gpt-x", timeout=300)
    assert "arena_hard gpt-x: score" in done.stdout
    answers = (project / "artifacts" / "eval" / "arena_hard" / "model_answer" / "gpt-x.jsonl").read_text().splitlines()
    assert validate_arena_hard(project / "artifacts" / "eval" / "arena_hard" / "model_answer" / "gpt-x.jsonl") == 5
    assert json.loads(answers[0])["model_id"] == "gpt-x"
    metrics = json.loads((project / "metrics" / "arena_hard" / "gpt-x.json").read_text())
    assert metrics["games"] == 10 and metrics["position_consistency"]["pairs"] == 5
    assert metrics["score"] == pytest.approx(50.0, abs=1e-3)  # every game a tie: no answer says STRONG
    assert metrics["style_controlled"]["score"] == pytest.approx(50.0, abs=1e-3)


def test_the_report_has_a_table_per_pairwise_evaluation_whose_metrics_exist(tmp_path, monkeypatch):
    from janus_align.evaluate import pairwise_report

    monkeypatch.chdir(tmp_path)
    assert pairwise_report.tables() == {}
    games = [_game("A>B", "q0", o) for o in ("candidate_first", "opponent_first")] + [
        _game("BOTH BAD", "q1", "candidate_first"),
        _game("B>A", "q1", "opponent_first"),
    ]
    from janus_align.evaluate.pairwise import fig3_metrics
    from janus_align.records import write_json

    metrics = fig3_metrics(games, 50, 0.95, 1)
    assert (metrics["win"], metrics["both_bad"], metrics["loss"], metrics["tie_plus_win"]) == (50.0, 25.0, 25.0, 50.0)
    assert metrics["position_consistency"] == {"pairs": 2, "consistent": 1, "rate": 0.5}
    assert metrics["per_item"] == {"win": 1, "both_good": 0, "both_bad": 0, "loss": 0, "inconsistent": 1}
    write_json(Path("metrics/pairwise.json"), {"pairs": {"sft_vs_base": metrics}})
    [(title, (header, rows))] = pairwise_report.tables().items()
    assert title.startswith("Pairwise, Fig. 3") and header[1:5] == ["win", "both good", "both bad", "loss"]
    assert rows[0][0] == "sft vs base" and rows[0][5] == "50.0" and rows[0][6] == "50.0% of 2"
    assert header[-1] == "items: win/good/bad/loss/inconsistent" and rows[0][-1] == "1/0/0/0/1"
