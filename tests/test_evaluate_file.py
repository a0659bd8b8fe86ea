"""`janus evaluate` on files in the official formats: names, per-record ids, dimensions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench_samples import DIMENSIONS, judgment, official_rows
from conftest import make_project, run_janus
from janus_align.bench.schema import bench_item
from janus_align.evaluate import scoring
from janus_align.evaluate.evaluate_file import responses_name
from janus_align.evaluate.official_evaluation import official_evaluation
from janus_align.evaluate.responses import Response
from loopback_server import LoopbackServer
from test_judge import _scripted_answer, use_loopback_judge


def test_output_names_come_from_the_model_not_from_the_file_kind():
    assert responses_name(Path("out/gpt-4_responses.json")) == "gpt-4"
    assert responses_name(Path("artifacts/eval/official/sft_evaluation.json")) == "sft"  # not sft_evaluation
    assert responses_name(Path("artifacts/eval/responses/base.jsonl")) == "base"
    assert responses_name(Path("_evaluation.json")) == "_evaluation"  # nothing left to call it


def test_each_evaluation_record_keeps_its_id():
    items = [bench_item(row, f"bench:{n}") for n, row in enumerate(official_rows(2))]
    rows = [judgment(item.id, rubric, 4) for item in items for rubric in range(4)]
    official = official_evaluation(items, {item.id: Response(item.id, "an answer") for item in items}, rows)
    assert [record["id"] for record in official.values()] == list(official) == [item.id for item in items]
    assert list(official[items[0].id])[:2] == ["id", "source"]  # the bench row's order, as the official scripts


def test_dimensions_come_from_the_preference_set_in_order_when_a_rubric_is_missing():
    """An official item whose preference set holds four dimensions and whose rubrics lost the last one."""
    rows = official_rows(2, with_ids=False)
    rows[1]["rubrics"] = rows[1]["rubrics"][:3]
    items = [bench_item(row, f"bench:{n}", n) for n, row in enumerate(rows)]
    judgments = [judgment(item.id, rubric, 3 + rubric % 2) for item in items for rubric in range(len(item.rubrics))]
    per_dimension = scoring.summarize(judgments, items, {})["per_dimension"]
    assert list(per_dimension) == list(DIMENSIONS)  # no `unknown`: the paper's order
    assert [items[1].dimension_of(i) for i in range(3)] == list(DIMENSIONS[:3])


@pytest.mark.slow
def test_janus_evaluate_on_its_own_evaluation_file_keeps_names_ids_and_dimensions(tmp_path):
    """The official bench (JSON list, no ids), then the evaluation file it wrote fed back as responses."""
    project = make_project(tmp_path / "project")
    bench = tmp_path / "Multifaceted-Bench.json"
    bench.write_text(json.dumps(official_rows(2, with_ids=False)))
    responses = tmp_path / "sft_responses.json"
    responses.write_text(json.dumps({"0": {"response": "GOOD-RESPONSE"}, "1": {"response": "GOOD-RESPONSE"}}))
    with LoopbackServer(answer=_scripted_answer) as server:
        use_loopback_judge(project, server.base_url, judge_extra="  constrained: false\n")
        first, second = tmp_path / "first", tmp_path / "second"
        run_janus(project, "evaluate", "--bench", str(bench), "--responses", str(responses), "--out", str(first))
        again = first / "sft_evaluation.json"
        run_janus(project, "evaluate", "--bench", str(bench), "--responses", str(again), "--out", str(second))
    assert sorted(p.name for p in second.iterdir()) == ["sft_evaluation.json", "sft_judgments.jsonl", "sft_scores.json"]
    official = json.loads((second / "sft_evaluation.json").read_text())
    assert [record["id"] for record in official.values()] == ["0", "1"]
    assert official["0"]["score"] == [4, 4, 4, 4]
    scores = json.loads((second / "sft_scores.json").read_text())
    assert scores["per_dimension"] == dict.fromkeys(DIMENSIONS, 4.0)
