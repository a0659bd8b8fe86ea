"""The whole pipeline as a newcomer runs it: a fresh copy of the repository with no data/ and no
DVC remote, `janus setup-data`, then `dvc repro` on the ci profile (tiny random model), as a team
runs it: every MLflow stage writes to a shared `mlflow server` on loopback (MLFLOW_TRACKING_URI),
and a teammate's clone resolves `models:/janus@champion` through that server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import fresh_clone, mlflow_server, run_janus, sh


def test_setup_data_materializes_exactly_what_data_dvc_records(tmp_path: Path) -> None:
    project = fresh_clone(tmp_path / "clone")
    assert not (project / "data").exists()
    run_janus(project, "setup-data")
    status = sh(project, "dvc", "status", "data.dvc").stdout
    assert "up to date" in status, status
    assert sh(project, "git", "status", "--porcelain", "data.dvc").stdout == ""  # data.dvc untouched
    again = run_janus(project, "setup-data").stdout
    assert "already matches" in again


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fresh_clone_repro_runs_every_stage_then_is_a_noop(tmp_path: Path) -> None:
    with mlflow_server(tmp_path / "server") as uri:
        _repro_against_a_team_server(tmp_path, uri)


def _repro_against_a_team_server(tmp_path: Path, uri: str) -> None:
    team = {"MLFLOW_TRACKING_URI": uri}
    project = fresh_clone(tmp_path / "clone")
    run_janus(project, "setup-data")
    run_janus(project, "use-profile", "ci")

    # As `make repro` runs it: stages forked from one preloaded process once its imports are done.
    pipeline_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    preloaded = sh(project, "janus", "preload", "--", "dvc", "repro", JANUS_PIPELINE_ID=pipeline_id, **team)
    assert "janus preload: serving after" in preloaded.stderr
    log = preloaded.stdout + preloaded.stderr
    assert "nanobind" not in log and "is empty." not in log  # nothing at exit, no warning on empty outputs

    status = sh(project, "dvc", "status").stdout
    assert "up to date" in status, status
    # A no-op (its time is benchmarks/noop_repro.py's to measure, not a test's on a shared CPU).
    second = sh(project, "dvc", "repro", **team).stdout
    assert "Running stage" not in second

    validation = json.loads((project / "metrics" / "validation.json").read_text())
    assert validation["success"] is True
    board = json.loads((project / "metrics" / "leaderboard.json").read_text())
    assert {"base", "sft", "sft_small", "dpo", "orpo"} <= set(board["models"])
    register = json.loads((project / "metrics" / "register.json").read_text())
    assert register["champion_version"] is not None
    summary = run_janus(project, "summary", **team).stdout
    assert f"models:/janus@champion -> version {register['champion_version']} in {uri}" in summary, summary
    assert f"MLflow UI:   {uri}" in summary
    # Nothing went to a local store: the server holds the runs, the registry and the artifacts.
    assert not (project / "mlflow.db").exists()
    assert sorted(p.name for p in (project / "mlruns").iterdir()) == [".gitkeep"]
    parent = _pipeline_run(uri, pipeline_id)
    assert parent.info.status == "FINISHED" and parent.info.end_time - parent.info.start_time > 10_000

    # A teammate's clone sees the champion through the server and chats with it.
    teammate = fresh_clone(tmp_path / "teammate")
    run_janus(teammate, "setup-data")
    seen = run_janus(teammate, "summary", **team).stdout
    assert f"models:/janus@champion -> version {register['champion_version']} in {uri}" in seen, seen
    answer = run_janus(teammate, "chat", "--max-new-tokens", "8", "Say hello.", **team)
    assert "chat: 1/1 req" in answer.stderr, answer.stderr[-2000:]  # the tiny random model's 8 tokens may be blank
    assert not (teammate / "mlflow.db").exists()


def _pipeline_run(uri: str, pipeline_id: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("janus")
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.kind = 'pipeline' and tags.pipeline_id = '{pipeline_id}'"
    )
    return run
