"""What a stage's MLflow run holds, read back from the real sqlite store after running `janus`:
only the params its dvc.yaml stage lists (as leaf keys under dotted names), and a name that says
what it ran for (`judge-base`, not two sibling runs both named `judge`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench_samples import official_rows, write_jsonl
from conftest import REPO, make_project, run_janus
from janus_align import tracking
from janus_align.config.load import parse_params
from janus_align.dvc_file import listed_params
from janus_align.errors import JanusError
from loopback_server import LoopbackServer
from test_judge import _scripted_answer, use_loopback_judge


def _runs(project: Path) -> list[Any]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        return mlflow.search_runs(experiment_names=["janus"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)


def _leaves(project: Path, stage: str) -> set[str]:
    """dvc.yaml's params of `stage`, expanded by hand to the leaf keys of the project's validated params
    (defaults included: an openai judge has keys params.yaml leaves to their defaults)."""
    params = parse_params(yaml.safe_load((project / "params.yaml").read_text())).model_dump(mode="json")
    leaves = set()
    for key in listed_params(project / "dvc.yaml")[stage]:
        value = params
        for part in key.split("."):
            value = value[part]
        leaves |= {f"{key}.{leaf}" for leaf in tracking.flatten(value)} if isinstance(value, dict) else {key}
    return leaves


def test_instructions_stage_run_logs_exactly_its_dvc_params_and_the_parent_keeps_the_file(ci_project: Path) -> None:
    run_janus(ci_project, "instructions")
    runs = _runs(ci_project)
    stage = next(r for r in runs if r.data.tags.get("stage") == "instructions")
    assert set(stage.data.params) == _leaves(ci_project, "instructions")
    assert {"seed", "synth.num_instructions", "synth.decontamination_ngram"} <= set(stage.data.params)
    assert len(stage.data.params) == 8  # not the whole params.yaml (170-odd)
    parent = next(r for r in runs if r.data.tags.get("kind") == "pipeline")
    assert parent.data.params == {}
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{ci_project / 'mlflow.db'}")
    try:
        kept = yaml.safe_load(
            Path(mlflow.artifacts.download_artifacts(f"{parent.info.artifact_uri}/params.yaml")).read_text()
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert (
        kept["synth"]["num_instructions"]
        == yaml.safe_load((ci_project / "params.yaml").read_text())["synth"]["num_instructions"]
    )


def test_params_of_a_dvc_stage_expand_to_leaves_and_a_foreach_stage_is_found_from_dvc_stage(monkeypatch) -> None:
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    judge = tracking.stage_params(params, "judge", REPO / "dvc.yaml")
    assert "judge.repeats" in judge and "seed" in judge and not any(k.startswith("train.") for k in judge)
    train = tracking.stage_params(params, "train_dpo", REPO / "dvc.yaml")
    assert "train.dpo.beta" in train and "train.common.lora.r" in train and "train.orpo.beta" not in train
    assert tracking.stage_params(params, "synthesis", REPO / "dvc.yaml") == tracking.flatten(
        params.model_dump(mode="json")
    )
    monkeypatch.setenv("DVC_STAGE", "generate_external@gpt-x")
    assert tracking.dvc_stage_name("generate") == "generate_external"
    monkeypatch.delenv("DVC_STAGE")
    assert tracking.dvc_stage_name("generate") == "generate"
    assert tracking.stage_run_name("judge", {"models": ["base"]}) == "judge-base"
    assert tracking.stage_run_name("generate", {"model": "sft"}) == "generate-sft"
    assert tracking.stage_run_name("judge", {"models": None}) == "judge"


def test_a_dvc_yaml_param_that_params_lacks_is_named(tmp_path: Path) -> None:
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    dvc_file = tmp_path / "dvc.yaml"
    dvc_file.write_text("stages:\n  judge:\n    cmd: janus judge\n    params:\n      - judge.repeatz\n")
    with pytest.raises(JanusError, match=r"dvc\.yaml: stages\.judge\.params lists `judge\.repeatz`"):
        tracking.stage_params(params, "judge", dvc_file)


@pytest.mark.slow
def test_judge_stage_runs_as_dvc_runs_them_are_named_for_their_candidate(tmp_path: Path) -> None:
    """`janus judge --model base` and `--model sft` (DVC's judge@base, judge@sft): runs `judge-base`
    and `judge-sft`, each with the candidate's scores and the judge stage's params only."""
    project = make_project(tmp_path / "project")
    rows = official_rows(2)
    write_jsonl(project / "artifacts" / "bench" / "bench.jsonl", rows)
    for name in ("base", "sft"):
        write_jsonl(
            project / "artifacts" / "eval" / "responses" / f"{name}.jsonl",
            [{"id": r["id"], "source": r["source"], "model": name, "response": "GOOD-RESPONSE"} for r in rows],
        )
    with LoopbackServer(answer=_scripted_answer) as server:
        use_loopback_judge(project, server.base_url, judge_extra="  constrained: false\n")
        for name in ("base", "sft"):
            run_janus(project, "judge", "--model", name, timeout=300, DVC_STAGE=f"judge@{name}")
    judge_runs = {r.info.run_name: r for r in _runs(project) if r.data.tags.get("stage") == "judge"}
    assert set(judge_runs) == {"judge-base", "judge-sft"}
    for name in ("base", "sft"):
        run = judge_runs[f"judge-{name}"]
        assert run.data.tags["candidate"] == name and run.data.metrics["overall"] == 4.0
        assert set(run.data.params) == _leaves(project, "judge") and "judge.repeats" in run.data.params


def test_parent_run_spans_its_stages_ends_with_the_last_outcome_and_stages_log_their_datasets(
    ci_project: Path,
) -> None:
    pipeline = {"JANUS_PIPELINE_ID": "20261202T101500Z"}
    run_janus(ci_project, "instructions", **pipeline)
    runs = {r.info.run_name: r for r in _runs(ci_project)}
    parent, stage = runs["pipeline-20261202T101500Z"], runs["instructions"]
    assert parent.info.start_time == 1796206500000  # 2026-12-02T10:15:00Z, when the pipeline began
    assert parent.info.status == "FINISHED" and parent.info.end_time >= stage.info.end_time
    logged = {i.dataset.name: i.dataset.digest for i in stage.inputs.dataset_inputs}
    assert logged == {
        "data/instructions": tracking.content_digest(ci_project / "data" / "instructions"),
        "data/bench/prompts.jsonl": tracking.content_digest(ci_project / "data" / "bench" / "prompts.jsonl"),
    }
    assert all(len(digest) == 12 for digest in logged.values())

    failed = run_janus(ci_project, "assemble", check=False, **pipeline)  # its inputs were never made
    assert failed.returncode != 0
    runs = {r.info.run_name: r for r in _runs(ci_project)}
    assert runs["assemble"].info.status == "FAILED"
    assert runs["pipeline-20261202T101500Z"].info.status == "FAILED"
    assert runs["pipeline-20261202T101500Z"].info.end_time >= runs["assemble"].info.end_time


def test_tracking_uri_rule_environment_then_params_then_local_default(tmp_path: Path, monkeypatch) -> None:
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(params) == "sqlite:///mlflow.db"
    served = params.model_copy(update={"mlflow": params.mlflow.model_copy(update={"tracking_uri": "http://a:5000"})})
    assert tracking.tracking_uri(served) == "http://a:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team:5000")
    assert tracking.tracking_uri(served) == "http://team:5000"
    assert tracking.is_remote_store("http://team:5000") and not tracking.is_remote_store("sqlite:///mlflow.db")
    # The Makefile no longer overrides the user's choice: what make's recipes see is the user's variable.
    project = make_project(tmp_path / "p", profile=None)
    (project / "Makefile").write_text(
        "include " + str(REPO / "Makefile") + "\nprint-uri:\n\t@echo $$MLFLOW_TRACKING_URI\n"
    )
    import subprocess

    shown = subprocess.run(
        ["make", "-s", "-f", str(project / "Makefile"), "print-uri"],
        cwd=project,
        env={**os.environ, "MLFLOW_TRACKING_URI": "http://team:5000"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "http://team:5000"
    assert run_janus(project, "tracking-uri").stdout.strip() == "sqlite:///mlflow.db"
    assert (
        run_janus(project, "tracking-uri", MLFLOW_TRACKING_URI="http://team:5000").stdout.strip() == "http://team:5000"
    )
