"""The register stage's promotion gate, against a real SQLite MLflow store, and the champion
served back: pyfunc predict with the signature's input, the scoring server, `janus chat`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from janus_align.config.load import parse_params
from janus_align.config.profiles import profile_params
from janus_align.errors import JanusError

REPO = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Capital of France?"}]


def _record(name: str) -> dict:
    """A training record as a training run leaves it (before the stage adds a logged model)."""
    return {
        "model": name,
        "kind": "reward" if name == "rm" else "causal",
        "recipe": {"name": name, "learning_rate": 1e-4},
        "metrics": {"train_loss": 1.5, "steps": 2},
        "prompt_format": "chat_template",
        "start_from": "base",
        "train_rows": 8,
        "eval_rows": 1,
        "stage": f"train_{name}",
        "run_id": f"run-{name}",
    }


@pytest.fixture
def store(ci_base_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A project dir (cwd) with an empty sqlite MLflow store and two 'trained' checkpoints.

    The checkpoints are copies of the tiny base with a training record but no logged model, so
    `register` logs the winner itself (the path the paper profile takes).
    """
    import mlflow

    from janus_align import tracking

    monkeypatch.chdir(tmp_path)
    # Absolute: MLflow caches stores by URI, and a relative one would outlive this test's cwd.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = parse_params(profile_params("ci", base=REPO / "params.yaml", profiles_dir=REPO / "profiles"))
    base = ci_base_project / "artifacts" / "models" / "base"
    for name in ("sft", "dpo", "rm"):
        shutil.copytree(base, tmp_path / "artifacts" / "models" / name)
        (tmp_path / "artifacts" / "models" / name / "janus_train.json").write_text(json.dumps(_record(name)))
    tracking.configure(params)
    yield params
    mlflow.set_tracking_uri(None)


def _entry(scores: float | list[float], judge: str = "judge-a") -> dict:
    """A leaderboard entry: a bare score is 5 items scored alike, a list gives each item's score."""
    items = [scores] * 5 if isinstance(scores, (int, float)) else scores
    overall = sum(items) / len(items)
    return {
        "overall": overall,
        "per_dimension": {"style": overall - 0.1},
        "item_scores": {f"item-{i}": v for i, v in enumerate(items)},
        "judge_model": judge,
        "judge_template": "t1",
    }


def _register(params, scores: dict, judge: str = "judge-a", bench_sha: str = "bench-1") -> dict:
    import mlflow

    from janus_align.registry import register

    board = {"models": {name: _entry(score, judge) for name, score in scores.items()}, "bench_sha": bench_sha}
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/leaderboard.json").write_text(json.dumps(board))
    with mlflow.start_run(run_name="register"):
        return register.run(params)


def _alias(name: str, alias: str) -> int | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return int(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@pytest.mark.slow
def test_champion_moves_only_to_a_better_model_and_previous_is_kept(store) -> None:
    from mlflow import MlflowClient

    first = _register(store, {"base": 4.9, "sft": 2.5, "dpo": 2.0, "rm": 4.5, "gpt-4": 4.8})
    assert (first["candidate"], first["version"], first["promoted"]) == ("sft", 1, True)  # base/rm/API excluded
    assert _alias("janus", "champion") == 1 and _alias("janus", "previous") is None

    # dpo's mean is higher, but on the same items it wins two and loses two: the paired interval
    # of the difference holds 0, so the point estimate does not move the champion.
    noisy = _register(store, {"sft": [2.0, 3.0, 2.0, 3.0, 2.5], "dpo": [3.0, 2.0, 3.5, 2.0, 3.0]})
    assert (noisy["candidate"], noisy["version"], noisy["promoted"], noisy["alias"]) == ("dpo", 2, False, "challenger")
    evidence = noisy["evidence"]
    assert evidence["compared"] and evidence["items"] == 5 and evidence["difference"] == pytest.approx(0.2)
    assert evidence["ci_low"] < 0 < evidence["ci_high"] and evidence["against_version"] == 1
    assert _alias("janus", "champion") == 1 and _alias("janus", "challenger") == 2

    tie = _register(store, {"sft": 2.5})
    assert not tie["promoted"] and _alias("janus", "champion") == 1  # a tie does not beat the champion

    # dpo's weights were registered as v2 (the challenger): better on every item, that version is promoted.
    better = _register(store, {"sft": 2.1, "dpo": [3.0, 2.5, 3.5, 2.5, 3.5]})
    assert (better["version"], better["promoted"], better["previous_version"]) == (2, True, 1)
    assert better["evidence"]["ci_low"] > 0 and better["evidence"]["source"] == "this run's judgments of sft"
    assert _alias("janus", "champion") == 2 and _alias("janus", "previous") == 1
    written = json.loads(Path("metrics/register.json").read_text())
    assert written["champion_version"] == 2 and written["promoted"] is True

    version = MlflowClient().get_model_version("janus", "2")
    assert version.tags["evidence/against_version"] == "1" and float(version.tags["evidence/ci_low"]) > 0
    assert version.tags["evidence/items"] == "5" and written["evidence"]["item_ids"] == [f"item-{i}" for i in range(5)]
    assert version.tags["bench_average"] == "3" and version.tags["candidate"] == "dpo"
    assert version.tags["bench/style"] == "2.9" and version.tags["run_id"] == "run-dpo"
    assert {"data_version", "git_commit", "profile"} <= set(version.tags)
    assert "bench average 3" in version.description


@pytest.mark.slow
def test_a_champion_off_the_leaderboard_is_compared_on_its_stored_items_and_never_across_judges(store) -> None:
    _register(store, {"sft": [2.0, 2.0, 3.0, 3.0, 2.0]})
    # sft is not judged in this run: its registration's item scores are the other side of the pairs.
    better = _register(store, {"dpo": [3.0, 3.0, 3.5, 4.0, 3.0]})
    assert better["promoted"] and better["evidence"]["source"].startswith("champion v1's registration")
    other_judge = _register(store, {"rm": 1.0, "sft": 4.9}, judge="judge-b")  # sft v1, now under another judge
    assert not other_judge["promoted"] and not other_judge["evidence"]["compared"]
    assert "judge_model 'judge-a'" in other_judge["evidence"]["reason"] and _alias("janus", "champion") == 2
    other_bench = _register(store, {"sft": 4.9}, bench_sha="bench-2")
    assert not other_bench["promoted"] and "another bench" in other_bench["evidence"]["reason"]
    unscored = {"sft": {**_entry(4.9), "contender": False}, "dpo": _entry(1.0)}
    Path("metrics/leaderboard.json").write_text(json.dumps({"models": unscored, "bench_sha": "bench-1"}))
    from janus_align.registry import register

    assert register.pick_winner(unscored)[0] == "dpo"  # an unscored candidate is never a contender


@pytest.mark.slow
def test_the_champion_answers_a_system_message_and_a_prompt(store, capsys: pytest.CaptureFixture) -> None:
    import mlflow
    import pandas as pd
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    from janus_align.registry import chat

    _register(store, {"sft": 2.5})
    capsys.readouterr()
    model = mlflow.pyfunc.load_model("models:/janus@champion")
    assert model.metadata.signature.inputs.input_names() == ["messages"]
    answers = model.predict(pd.DataFrame({"messages": [MESSAGES]}), params={"max_new_tokens": 4})
    assert len(answers) == 1 and isinstance(answers[0], str)

    # What `mlflow models serve -m models:/janus@champion` answers (same app, in process).
    client = TestClient(scoring_server.init(model))
    response = client.post("/invocations", json={"inputs": [{"messages": MESSAGES}], "params": {"max_new_tokens": 4}})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1

    args = argparse.Namespace(
        model="models:/janus@champion",
        system="You answer in one word.",
        prompt="Capital of France?",
        max_new_tokens=4,
        params=str(REPO / "profiles" / "missing.yaml"),
    )
    chat.main(args)
    from_registry = capsys.readouterr().out
    chat.main(argparse.Namespace(**{**vars(args), "model": "artifacts/models/sft"}))
    assert capsys.readouterr().out == from_registry  # greedy: the checkpoint answers alike
    with pytest.raises(JanusError, match="neither a checkpoint directory nor an MLflow model URI"):
        chat.main(argparse.Namespace(**{**vars(args), "model": "no-such-thing"}))


def test_a_broken_leaderboard_is_named(store) -> None:
    from janus_align.registry import register

    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/leaderboard.json").write_text(json.dumps({"models": {"sft": {"overall": "high"}}}))
    with pytest.raises(JanusError, match=r"leaderboard\.json: models\.sft\.overall: expected a finite number"):
        register.register(store)
    Path("metrics/leaderboard.json").write_text(json.dumps({"models": {"base": {"overall": 2.0}}}))
    with pytest.raises(JanusError, match="no trained model on the leaderboard"):
        register.register(store)


def test_a_missing_or_malformed_train_record_is_an_error_naming_the_file(store) -> None:
    from janus_align.models.train_record import TrainRecordError, read_train_record
    from janus_align.registry import register

    models = {"base": {"overall": 4.0}, "sft": {"overall": 2.0}}
    assert register.pick_winner(models)[0] == "sft"  # the base has no record: not a candidate
    with pytest.raises(TrainRecordError, match=r"models/base/janus_train\.json: no training record"):
        read_train_record("artifacts/models/base")
    record = Path("artifacts/models/sft/janus_train.json")
    record.write_text('{"model": "sft",')
    with pytest.raises(TrainRecordError, match=r"models/sft/janus_train\.json:1: broken JSON"):
        register.pick_winner(models)
    renamed = {("prompt_fmt" if key == "prompt_format" else key): value for key, value in _record("sft").items()}
    record.write_text(json.dumps(renamed))
    with pytest.raises(TrainRecordError, match=r"sft/janus_train\.json: prompt_format: Field required; prompt_fmt"):
        register.pick_winner(models)
    record.write_text(json.dumps({**_record("sft"), "metrics": {"train_loss": "low"}}))
    with pytest.raises(TrainRecordError, match=r"sft/janus_train\.json: metrics\.train_loss"):
        register.pick_winner(models)


def test_the_chat_model_runs_with_the_generate_stage_settings_recorded_at_log_time(store) -> None:
    """Batch size and dtype come from params' generate section, into the logged model's config."""
    import mlflow
    import torch

    from janus_align.registry.chat import open_chat_model
    from janus_align.registry.chat_model import log_chat_model

    generate = store.generate.model_copy(update={"batch_size": 3, "dtype": "bfloat16"})
    params = store.model_copy(update={"generate": generate})
    with mlflow.start_run(run_name="log"):
        uri = log_chat_model("artifacts/models/sft", "chat_template", params)
    later = store.model_copy(update={"generate": store.generate.model_copy(update={"batch_size": 5})})
    assert later.generate.batch_size == 5  # a later params.yaml does not change the logged model
    model = mlflow.pyfunc.load_model(uri)
    assert model.model_config == {"prompt_format": "chat_template", "dtype": "bfloat16", "batch_size": 3}
    backend = model.unwrap_python_model().engine.backend
    assert backend.config.batch_size == 3 and backend.model.dtype == torch.bfloat16
    checkpoint = open_chat_model("artifacts/models/sft", params).model.engine.backend  # `janus chat --model DIR`
    assert checkpoint.config.batch_size == 3 and checkpoint.model.dtype == torch.bfloat16


def test_sampling_without_a_seed_samples_and_a_seed_reproduces(store) -> None:
    """Two equal sampled requests with no seed answer differently (no cached answer under a
    default seed); with a seed they answer the same; greedy ignores it. Documented in metadata."""
    import mlflow

    from janus_align.registry.chat_model import log_chat_model

    with mlflow.start_run(run_name="log"):
        uri = log_chat_model("artifacts/models/sft", "chat_template", store)
    model = mlflow.pyfunc.load_model(uri)
    rows = [{"messages": [{"role": "user", "content": "Name a colour."}]}]
    sampled = {"max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0}
    unseeded = [model.predict(rows, params=sampled)[0] for _ in range(2)]
    assert unseeded[0] != unseeded[1]
    seeded = [model.predict(rows, params={**sampled, "seed": 7})[0] for _ in range(2)]
    assert seeded[0] == seeded[1]
    greedy = [model.predict(rows, params={"max_new_tokens": 12})[0] for _ in range(2)]
    assert greedy[0] == greedy[1]
    assert "fresh seed" in model.metadata.metadata["params_doc"]["seed"]


def _versions(name: str) -> list[int]:
    from mlflow import MlflowClient

    return sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name = '{name}'"))


@pytest.mark.slow
def test_the_same_checkpoint_registered_twice_is_one_version_with_its_scores_updated(store) -> None:
    from mlflow import MlflowClient

    from janus_align.llm.transformers_backend import checkpoint_fingerprint

    first = _register(store, {"sft": 2.5})
    again = _register(store, {"sft": 2.6})  # the same weights, judged again (say judge.repeats: 2)
    assert _versions("janus") == [1] and (again["version"], again["reused_version"]) == (1, True)
    assert not again["promoted"] and again["alias"] == "champion" and _alias("janus", "previous") is None
    version = MlflowClient().get_model_version("janus", "1")
    assert version.tags["checkpoint_sha"] == checkpoint_fingerprint("artifacts/models/sft") == first["checkpoint_sha"]
    assert version.tags["bench_average"] == "2.6" and "bench average 2.6" in version.description
    assert json.loads(Path("metrics/register.json").read_text())["champion_version"] == 1


@pytest.mark.slow
def test_a_dvc_experiment_registers_a_challenger_and_leaves_the_champion(store, monkeypatch) -> None:
    from mlflow import MlflowClient

    _register(store, {"sft": 2.5})
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0" * 40)  # what `dvc exp run` sets in each stage
    monkeypatch.setenv("DVC_EXP_NAME", "pious-lamb")
    trial = _register(store, {"sft": 2.0, "dpo": 3.0})
    assert (trial["version"], trial["promoted"], trial["alias"], trial["champion_version"]) == (
        2,
        False,
        "challenger",
        1,
    )
    assert _alias("janus", "champion") == 1 and _alias("janus", "challenger") == 2
    assert MlflowClient().get_model_version("janus", "2").tags["dvc_experiment"] == "pious-lamb"
    rescored = _register(store, {"sft": 2.9})  # the champion's weights, scored under the experiment's judge
    assert rescored["version"] == 1 and _alias("janus", "champion") == 1
    assert MlflowClient().get_model_version("janus", "1").tags["bench_average"] == "2.5"  # the gate's score stays

    monkeypatch.delenv("DVC_EXP_NAME")  # applied to the workspace: `dvc repro -f -s register`
    monkeypatch.delenv("DVC_EXP_BASELINE_REV")
    applied = _register(store, {"sft": 2.0, "dpo": 3.0})
    assert (applied["version"], applied["promoted"]) == (2, True) and _alias("janus", "champion") == 2
    assert _versions("janus") == [1, 2]


@pytest.mark.slow
def test_dvc_exp_run_names_the_experiment_to_the_stage_and_dvc_repro_does_not(tmp_path: Path) -> None:
    """The variable `tracking.dvc_experiment` reads is what DVC 3.67 really sets, in a real repo."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "DVC_NO_ANALYTICS": "1",
        **{
            f"GIT_{who}_{what}": value
            for who in ("AUTHOR", "COMMITTER")
            for what, value in (("NAME", "t"), ("EMAIL", "t@t"))
        },
    }
    for key in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE"):
        env.pop(key, None)
    command = f"{sys.executable} -c 'from janus_align import tracking; print(tracking.dvc_experiment())' > out.txt"
    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  probe:\n    cmd: {command}\n    outs:\n      - out.txt:\n          cache: false\n"
    )
    (tmp_path / ".gitignore").write_text("")

    def run(*args: str) -> None:
        subprocess.run(args, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)

    dvc = str(Path(sys.executable).parent / "dvc")
    run("git", "init", "-q")
    run(dvc, "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "init")
    run(dvc, "repro", "-q")
    assert (tmp_path / "out.txt").read_text().strip() == "None"
    run(dvc, "exp", "run", "-q", "-f", "--name", "probe-exp")
    assert (tmp_path / "out.txt").read_text().strip() == "probe-exp"


def test_summary_says_where_the_registry_is_and_that_it_lacks_the_champion(tmp_path, monkeypatch, capsys) -> None:
    """A second clone: metrics/register.json names version 1, this machine's store has no model."""
    from janus_align import summary

    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    Path("metrics").mkdir()
    Path("metrics/register.json").write_text(json.dumps({"name": "janus", "champion_version": 1}))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    summary.main(argparse.Namespace(params="params.yaml"))
    line = next(line for line in capsys.readouterr().out.splitlines() if "registry:" in line)
    assert "models:/janus@champion not found in sqlite:///mlflow.db" in line and "version 1" in line
    assert not Path("mlflow.db").exists()  # asking did not create an empty store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    summary.main(argparse.Namespace(params="params.yaml"))
    line = next(line for line in capsys.readouterr().out.splitlines() if "registry:" in line)
    assert "models:/janus@champion: http://127.0.0.1:9 does not answer (" in line


@pytest.mark.slow
def test_summary_reads_the_champion_from_the_registry_in_effect(store, capsys) -> None:
    import os

    from janus_align import summary

    shutil.copy(REPO / "params.yaml", "params.yaml")
    summary.main(argparse.Namespace(params="params.yaml"))  # a store that answers, without the model
    uri = os.environ["MLFLOW_TRACKING_URI"]
    assert f"models:/janus@champion not found in {uri}" in capsys.readouterr().out
    _register(store, {"sft": 2.5})
    capsys.readouterr()
    summary.main(argparse.Namespace(params="params.yaml"))
    assert f"  registry:    models:/janus@champion -> version 1 in {uri}" in capsys.readouterr().out.splitlines()


SERVED_PROCESS = """
import json, os, sys
import mlflow, pandas as pd

# What the OpenMP runtime reads, once, when torch loads it (the audit event fires before the import).
policy = []
sys.addaudithook(lambda event, args: policy.append(os.environ.get("OMP_WAIT_POLICY"))
                 if event == "import" and args[0] == "torch" and not policy else None)
model = mlflow.pyfunc.load_model(sys.argv[1])
assert "torch" in sys.modules and model.unwrap_python_model().engine.backend.model is not None

import transformers  # loaded by now; every later checkpoint load goes through this classmethod
loads = []
real = transformers.PreTrainedModel.from_pretrained.__func__
def counted(cls, *args, **kwargs):
    loads.append(cls.__name__)
    return real(cls, *args, **kwargs)
transformers.PreTrainedModel.from_pretrained = classmethod(counted)
for question in ("Capital of France?", "Capital of Spain?"):
    messages = [{"role": "user", "content": question}]
    model.predict(pd.DataFrame({"messages": [messages]}), params={"max_new_tokens": 3})
print(json.dumps({"loads_in_requests": loads, "policy": policy[0] if policy else None}))
"""


def test_a_served_chat_model_loads_once_and_its_idle_openmp_threads_sleep(store) -> None:
    """As `mlflow models serve` runs it: a fresh interpreter that never went through the `janus` CLI.

    Idle OpenMP threads that spin (libgomp's default without OMP_WAIT_POLICY) made each request
    several times slower beside a second uvicorn worker or any other busy process (BENCHMARKS.md).
    """
    import os
    import subprocess
    import sys

    import mlflow

    from janus_align.registry.chat_model import log_chat_model

    with mlflow.start_run(run_name="log"):
        uri = log_chat_model("artifacts/models/sft", "chat_template", store)
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", SERVED_PROCESS, uri], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["loads_in_requests"] == []  # loaded once, in load_context; two requests reuse it
    assert seen["policy"] == "PASSIVE"
