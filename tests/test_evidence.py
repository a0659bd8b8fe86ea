"""Evidence beside the scores: length control, judge reliability (calibration, second judge,
repeat stability, the unscored gate), the official responses file, and ablations as DVC experiments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.bench_samples import official_rows
from tests.conftest import make_project, run_janus
from tests.loopback_server import LoopbackServer
from tests.test_judge import KEY_ENV, use_loopback_judge

from janus_align.bench.schema import BenchFileError
from janus_align.config.schema import JudgeConfig
from janus_align.evaluate import ablations, reliability
from janus_align.evaluate.length_control import length_controlled, length_summary
from janus_align.evaluate.official_evaluation import official_responses
from janus_align.evaluate.responses import Response, load_responses
from janus_align.evaluate.rows import Judgment
from janus_align.records import write_json, write_jsonl

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "dvc_exp_show_ablations.json"


def _judgment(item: str, rubric: int, repeat: int, verdict: int | None) -> Judgment:
    return Judgment(
        id=item, source="s", model="m", rubric_index=rubric, dimension="style", repeat=repeat, verdict=verdict,
        feedback="", raw="", error=None, call_failed=False, attempts=1, seed=0, judge_model="j",
        prompt_hash="h", template_version="t",
    )  # fmt: skip


def test_a_score_explained_by_length_alone_is_equal_once_length_is_controlled():
    # Both models follow score = 2 + 0.5 * log-length exactly; "long" only writes longer answers.
    import math

    short = [(2 + 0.5 * math.log1p(n), n) for n in (50, 80, 120, 200)]
    long = [(2 + 0.5 * math.log1p(n), n) for n in (400, 700, 1000, 1500)]
    fitted = length_controlled({"short": short, "long": long})
    raw = {name: sum(s for s, _ in pairs) / 4 for name, pairs in (("short", short), ("long", long))}
    assert raw["long"] - raw["short"] > 1.0  # the raw means reward verbosity
    assert fitted["scores"]["long"] == pytest.approx(fitted["scores"]["short"], abs=1e-9)
    assert fitted["slope"] > 0 and fitted["n"] == 8
    # One model, or no spread in length: the LC score is the raw mean.
    assert length_controlled({"short": short})["scores"]["short"] == pytest.approx(raw["short"])
    same = length_controlled({"a": [(4.0, 10), (2.0, 10)], "b": [(3.0, 10)]})
    assert same["scores"] == {"a": 3.0, "b": 3.0} and same["slope"] is None
    assert length_summary([10, 20, 30])["median"] == 20.0 and length_summary([])["n"] == 0


def test_agreement_kappa_is_weighted_and_undefined_for_a_constant_rater():
    perfect = reliability.agreement([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert perfect["weighted_kappa"] == pytest.approx(1.0) and perfect["spearman"] == pytest.approx(1.0)
    near = reliability.agreement([1, 5, 1, 5], [2, 4, 2, 4])
    far = reliability.agreement([1, 5, 1, 5], [5, 1, 5, 1])
    assert near["weighted_kappa"] > 0.5 > far["weighted_kappa"] and near["exact"] == 0 and near["within_one"] == 1
    constant = reliability.agreement([1, 5, 1, 5], [4, 4, 4, 4])
    assert constant["spearman"] is None and constant["weighted_kappa"] == pytest.approx(0.0)
    first = [_judgment("a", 0, 0, 5), _judgment("a", 0, 1, 3), _judgment("b", 0, 0, 2), _judgment("c", 0, 0, None)]
    second = [_judgment("a", 0, 0, 4), _judgment("b", 0, 0, 1), _judgment("c", 0, 0, 3)]
    both = reliability.judge_agreement(first, second)
    assert both["n"] == 2 and both["within_one"] == 1.0  # c: unscored by the first judge, left out
    stable = reliability.repeat_stability(first)
    assert stable["pairs"] == 1 and stable["mean_std"] == pytest.approx(1.0) and stable["all_equal"] == 0.0
    assert reliability.repeat_stability(second)["mean_std"] is None  # one repeat: nothing to measure


def test_the_bundled_calibration_set_has_clear_grades_and_a_broken_one_is_named(tmp_path):
    items = reliability.load_calibration(REPO / "src/janus_align/default_data/calibration/judge.jsonl")
    assert len(items) == 6 and sorted(g for item in items for g in item.grades) == [1, 1, 1, 5, 5, 5]
    bad = tmp_path / "cal.jsonl"
    row = json.loads((REPO / "src/janus_align/default_data/calibration/judge.jsonl").read_text().splitlines()[0])
    write_jsonl(bad, [row, {**row, "id": "x", "grades": [5, 4]}])
    with pytest.raises(BenchFileError, match=r"cal.jsonl:2: 'grades'"):
        reliability.load_calibration(bad)
    judged = [_judgment(items[0].id, 0, 0, 1), _judgment(items[1].id, 0, 0, 5)]  # every grade reversed
    result = reliability.calibration_result(items[:2], judged, bad)
    with pytest.raises(reliability.JudgeReliabilityError, match=r"failed calibration on .*cal.jsonl: weighted kappa"):
        reliability.check_calibration(result, JudgeConfig(), "judge-x")
    reliability.check_calibration(result, JudgeConfig(calibration={"min_kappa": None}), "judge-x")  # report only


def test_unscored_share_above_the_limit_fails_and_is_never_a_contender():
    metrics = {"unscored_rate": 0.25, "unscored": 10, "judgments": 40}
    with pytest.raises(reliability.JudgeReliabilityError, match=r"judge sft: 25.0% .*10/40.* 20.0%.*judgments/sft"):
        reliability.check_unscored("sft", metrics, JudgeConfig(), Path("artifacts/eval/judgments/sft.jsonl"))
    reliability.check_unscored("sft", {**metrics, "unscored_rate": 0.2}, JudgeConfig(), Path("x"))
    assert not reliability.is_contender({"overall": 4.0, "unscored_rate": 0.5}, 0.2)
    assert not reliability.is_contender({"overall": None, "unscored_rate": 0.0}, 0.2)
    assert reliability.is_contender({"overall": 4.0, "unscored_rate": 0.1}, 0.2)


def test_official_responses_file_is_keyed_by_bench_id_and_reads_back(tmp_path):
    from janus_align.bench.schema import BenchItem

    items = [BenchItem(**{k: v for k, v in row.items() if k != "preference_set"}) for row in official_rows(3)]
    responses = {items[0].id: Response(items[0].id, "answer 0"), items[1].id: Response(items[1].id, "", "boom")}
    official = official_responses(items, responses)
    # The official run_eval_openai.py layout: {bench id: {"response": text}}, None for a failed request.
    assert official == {
        items[0].id: {"response": "answer 0"},
        items[1].id: {"response": None},
        items[2].id: {"response": None},
    }
    path = tmp_path / "m_responses.json"
    write_json(path, official)
    back = load_responses(path)
    assert back[items[0].id] == Response(items[0].id, "answer 0") and back[items[1].id].error == "no response"


def test_the_ablation_table_comes_from_a_recorded_exp_show(tmp_path):
    rows = ablations.report(json.loads(GOLDEN.read_text()), tmp_path)
    by_name = {row["name"]: row for row in rows}
    assert [by_name[f"abl-spi-{n}"]["sets_per_instruction"] for n in (1, 2, 3)] == [1, 2, 3]
    assert by_name["abl-spi-1"]["scores"]["sft"]["score"] == pytest.approx(3.1)
    assert by_name["abl-base-m2"]["base_model"] == "m2" and by_name["master"]["baseline"]
    assert by_name["master"]["state"] == "no scores"  # the baseline commit never ran here
    markdown = (tmp_path / "ablations.md").read_text()
    assert "| abl-spi-2 | 2 | m1 | success | 3.20 [2.50, 3.90] | 3.00 [2.40, 3.50] |" in markdown
    assert (tmp_path / "ablations.png").stat().st_size > 1000
    assert json.loads((tmp_path / "ablations.json").read_text())[1]["name"] == "abl-base-m2"


@pytest.mark.slow
def test_janus_ablations_queue_queues_one_dvc_experiment_per_setting(tmp_path):
    project = make_project(tmp_path / "project", profile=None)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=project, check=True)
    params = (project / "params.yaml").read_text().replace("base_models: []", "base_models: [org/Other-1B]")
    (project / "params.yaml").write_text(params)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project, check=True)
    done = run_janus(project, "ablations", "queue", timeout=300)
    assert "queued ablation-sets-1 (synth.sets_per_instruction=1)" in done.stdout
    status = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "queue", "status"], cwd=project, capture_output=True, text=True
    )
    names = {"ablation-sets-1", "ablation-sets-2", "ablation-sets-3", "ablation-base-org-other-1b"}
    assert names <= set(status.stdout.split()) and status.stdout.count("Queued") == 4


def _calibrated_answer(body: dict, good: int = 5, bad: int = 2) -> str:
    """A judge that grades the calibration set right (5 for its good answers, 1 for its bad), and
    the candidates' GOOD/BAD answers `good`/`bad`."""
    user = body["messages"][-1]["content"]
    response = user.split("###Reference Answer")[0]
    if "GOOD-ANSWER" in response or "BAD-ANSWER" in response:
        return f"Feedback: graded. [RESULT] {good if 'GOOD-ANSWER' in response else bad}"
    if any(marker in response for marker in ("pathetic", "laid by hens", "rich history")):
        return "Feedback: poor. [RESULT] 1"
    return "Feedback: good. [RESULT] 5"


@pytest.mark.slow
def test_judge_stage_gates_on_calibration_measures_a_second_judge_and_writes_the_official_responses(tmp_path):
    project = make_project(tmp_path / "project")
    rows = official_rows(2)
    answers = {rows[0]["id"]: "GOOD-ANSWER", rows[1]["id"]: "BAD-ANSWER"}
    write_jsonl(project / "artifacts" / "bench" / "bench.jsonl", rows)
    write_jsonl(
        project / "artifacts" / "eval" / "responses" / "base.jsonl",
        [{"id": r["id"], "source": r["source"], "model": "base", "response": answers[r["id"]]} for r in rows],
    )
    strict = "  constrained: false\n  calibration: {min_kappa: 0.8}\n  max_unscored_rate: 0.2\n"
    with LoopbackServer(answer=lambda body: "Feedback: fine. [RESULT] 4") as server:
        use_loopback_judge(project, server.base_url, llm_extra="    timeout_s: 2\n", judge_extra=strict)
        failed = run_janus(project, "judge", "--model", "base", timeout=300, check=False)
        judged_before_failing = server.count()
    assert failed.returncode == 2 and "failed calibration on data/calibration/judge.jsonl" in failed.stderr
    assert "Traceback" not in failed.stderr and judged_before_failing == 6  # only the calibration set was asked
    assert not (project / "artifacts/eval/judgments/base.jsonl").exists()

    with (
        LoopbackServer(answer=_calibrated_answer) as server,
        LoopbackServer(answer=lambda body: _calibrated_answer(body, good=4, bad=1)) as second,
    ):
        second_judge = (
            f"  second:\n    backend: openai\n    model: judge-two\n    base_url: {second.base_url}\n"
            f"    api_key_env: {KEY_ENV}\n    max_retries: 0\n    timeout_s: 2\n"
        )
        use_loopback_judge(project, server.base_url, llm_extra="    timeout_s: 2\n", judge_extra=strict + second_judge)
        done = run_janus(project, "judge", "--model", "base", timeout=300, **{KEY_ENV: "test-key"})
        assert second.count() == 6 + 8  # its own calibration, then every verdict once
    assert "second judge" in done.stdout
    metrics = json.loads((project / "metrics/eval/base.json").read_text())
    assert metrics["calibration"]["weighted_kappa"] == pytest.approx(1.0) and metrics["overall"] == 3.5
    agreement = metrics["second_judge"]
    assert agreement["judge_model"].endswith(":judge-two") and agreement["n"] == 8 and agreement["exact"] == 0.0
    assert agreement["within_one"] == 1.0 and agreement["spearman"] == pytest.approx(1.0)
    assert agreement["weighted_kappa"] > 0.5 and agreement["calibration_kappa"] == pytest.approx(1.0)
    official = json.loads((project / "artifacts/eval/official/base_responses.json").read_text())
    assert official == {r["id"]: {"response": answers[r["id"]]} for r in rows}
