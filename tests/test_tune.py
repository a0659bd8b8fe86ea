"""The tune stage: an Optuna study on SQLite that survives interruption and is shared by workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, clone_project, janus_env, run_janus
from test_train_recipes import write_collection


def _tune_project(ci_base_project: Path, target: Path, **tune: object) -> Path:
    project = clone_project(ci_base_project, target)
    write_collection(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tune"].update(tune)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def _trials(project: Path) -> list:
    import optuna

    storage = f"sqlite:///{project / 'optuna.db'}"
    names = optuna.get_all_study_names(storage)
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=storage).get_trials(deepcopy=False)


def _errors(stderr: str) -> str:
    """The tracebacks and error lines of interleaved worker output (progress bars left out)."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(("Traceback", "error:"))]
    return "\n\n".join("\n".join(lines[i : i + 30]) for i in starts[:3]) or stderr[-3000:]


def _complete(trials: list) -> list:
    return [t for t in trials if t.state.name == "COMPLETE"]


@pytest.mark.slow
def test_an_interrupted_study_resumes_without_losing_completed_trials(ci_base_project: Path, tmp_path: Path) -> None:
    project = _tune_project(ci_base_project, tmp_path / "project", n_trials=2, heartbeat_s=1)
    tune = subprocess.Popen(
        [str(BIN / "janus"), "tune"],
        cwd=project,
        env=janus_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    try:
        while time.time() < deadline and tune.poll() is None:
            if (project / "optuna.db").exists() and _complete(_trials(project)):
                break
            time.sleep(0.5)
    finally:
        os.killpg(tune.pid, signal.SIGKILL)  # the stage dies mid-study, as on a preempted machine
        tune.wait()
    before = _complete(_trials(project))
    assert len(before) == 1 and not (project / "artifacts" / "tune" / "best_params.json").exists()

    run_janus(project, "tune")
    after = _trials(project)
    done = _complete(after)
    assert len(done) == 2
    kept = next(t for t in done if t.number == before[0].number)
    assert (kept.value, kept.params, kept.datetime_complete) == (
        before[0].value,
        before[0].params,
        before[0].datetime_complete,
    )
    # The trial that was running when the stage died stopped sending heartbeats: marked failed, not redone.
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in after)
    best = json.loads((project / "artifacts" / "tune" / "best_params.json").read_text())
    assert best["eval_loss"] == min(t.value for t in done) and set(best["params"]) == {
        "learning_rate",
        "epochs",
        "warmup_steps",
        "lora_r",
    }
    metrics = json.loads((project / "metrics" / "tune.json").read_text())
    assert metrics["trials_complete"] == 2


@pytest.mark.slow
def test_two_local_workers_share_one_study_and_log_nested_trials(ci_base_project: Path, tmp_path: Path) -> None:
    import mlflow

    project = _tune_project(ci_base_project, tmp_path / "project", n_trials=3, max_steps=2)
    process = run_janus(project, "tune", "--workers", "2", JANUS_PIPELINE_ID="test-tune", check=False)
    assert process.returncode == 0, _errors(process.stderr)
    trials = _trials(project)
    done = _complete(trials)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 3 <= len(finished) <= 4  # a worker may finish the trial it had started when the count was reached
    assert done and all(t.state.name != "FAIL" for t in trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(trials)  # differently seeded samplers
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["janus"], output_format="list")
    tune_run = next(r for r in runs if r.data.tags.get("stage") == "tune" and r.data.tags.get("kind") != "trial")
    trial_runs = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {tune_run.info.run_id}
    assert {t.user_attrs["mlflow_run_id"] for t in done} <= {r.info.run_id for r in trial_runs}
    complete_runs = [r for r in trial_runs if r.data.tags.get("trial_state") == "complete"]
    assert all(
        {"hp/learning_rate", "hp/lora_r", "hp/epochs", "hp/warmup_steps"} <= set(r.data.params) for r in complete_runs
    )
    assert {t.user_attrs["worker"] for t in finished} == {0, 1}  # both processes ran trials


@pytest.mark.slow
def test_bench_objective_scores_each_trial_model_with_the_judge(ci_base_project: Path, tmp_path: Path) -> None:
    from bench_samples import official_rows, write_jsonl

    project = _tune_project(ci_base_project, tmp_path / "project", n_trials=1, max_steps=1, objective="bench")
    write_jsonl(project / "artifacts" / "bench" / "bench.jsonl", official_rows(3))
    process = run_janus(project, "tune", check=False)
    assert process.returncode == 0, _errors(process.stderr)
    (trial,) = _complete(_trials(project))
    score = trial.user_attrs["bench_score"]
    assert 1.0 <= score <= 5.0 and trial.value == -score  # minimized: minus the judge's mean score
    best = json.loads((project / "artifacts" / "tune" / "best_params.json").read_text())
    assert (best["objective"], best["bench_score"]) == ("bench", score)
    assert best["eval_loss"] == trial.user_attrs["eval_loss"] > 0
    assert "tune: best bench score" in process.stdout


def test_bench_objective_without_a_bench_names_the_missing_file(ci_base_project: Path, tmp_path: Path) -> None:
    project = _tune_project(ci_base_project, tmp_path / "project", objective="bench")
    process = run_janus(project, "tune", check=False)
    assert process.returncode != 0
    assert "tune.objective: bench needs artifacts/bench/bench.jsonl; run `janus bench` first" in process.stderr
