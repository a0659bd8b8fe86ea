"""Stage `tune`: an Optuna study over the SFT hyperparameters (learning rate, epochs, LoRA rank,
warmup), whose winner `train_sft` and `train_sft_small` read from artifacts/tune/best_params.json.

- Storage `tune.storage` (SQLite at the project root by default, outside every DVC output, so
  the study survives DVC deleting the stage's outputs; any RDB URL works, `${VAR}` expanded from
  the environment so a password never sits in params.yaml). `load_if_exists` resumes a study:
  completed trials are kept and only the missing ones run. A worker killed mid-trial stops
  sending heartbeats; after `2 x tune.heartbeat_s` its trial is marked failed and replaced.
- The study name is `tune.study_name` plus a fingerprint of what the trials' losses depend on
  (ranges, SFT settings, base model, the SFT split's files), so a changed recipe starts a fresh
  study instead of mixing incomparable trials, and every worker of one recipe finds the same one.
- Objective: the loss on the held-out part of the SFT split (`train.common.eval_fraction`),
  reported every `tune.eval_steps` steps to a median pruner. With `tune.objective: bench` each
  trial's model also answers the bench and is judged (evaluate/bench_score.py): the study then
  minimizes minus the bench score, so the pruner still reads the held-out loss (lower is better
  for both) and stops hopeless trials before their expensive bench run.
- Each trial is a nested MLflow run under the stage's `tune` run, its parameters prefixed `hp/`.
- `janus tune --workers N` runs N local processes on one study; on several machines, run
  `janus tune` on each against one RDB storage URL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from janus_align import paths
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.records import write_json
from janus_align.train.datasets import SplitRows, load_split, split_files
from janus_align.train.settings import RecipeSettings, resolve

PARENT_RUN_ENV = "JANUS_TUNE_PARENT_RUN_ID"


class TuneError(JanusError, ValueError):
    """The study cannot run with these params; the message names the key."""


class PruneOnEvalLoss(TrainerCallback):
    """Report each evaluation's loss to the trial; stop the trial when the pruner says so."""

    def __init__(self, trial: Any):
        self.trial = trial

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any
    ) -> None:
        import optuna

        if not metrics or "eval_loss" not in metrics:
            return
        self.trial.report(float(metrics["eval_loss"]), state.global_step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"eval_loss {metrics['eval_loss']:.4f} at step {state.global_step}")


def storage_url(params: Params) -> str:
    return os.path.expandvars(params.tune.storage)


def study_name(params: Params) -> str:
    """`tune.study_name` + a fingerprint of everything a trial's loss depends on (not n_trials)."""
    train_files, _ = split_files("sft")
    digest = hashlib.sha256()
    for path in train_files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    tune = params.tune.model_dump(exclude={"n_trials", "storage", "study_name", "heartbeat_s"})
    inputs = {
        "tune": tune,
        "common": params.train.common.model_dump(),
        "sft": params.train.sft.model_dump(),
        "base": params.model.base,
        "prompt_format": params.model.prompt_format,
        "seed": params.seed,
        "data": digest.hexdigest(),
    }
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return f"{params.tune.study_name}-{hashlib.sha256(blob).hexdigest()[:10]}"


def open_study(params: Params, worker: int = 0) -> Any:
    """Create or resume the study (every worker calls this; load_if_exists makes it safe)."""
    import optuna

    url = storage_url(params)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # several workers share the file
    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=params.tune.heartbeat_s, grace_period=2 * params.tune.heartbeat_s, **kwargs
    )
    return optuna.create_study(
        study_name=study_name(params),
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=params.seed + worker),  # workers must not propose alike
        pruner=optuna.pruners.MedianPruner(n_startup_trials=params.tune.pruner_startup_trials, n_warmup_steps=0),
    )


def suggest(trial: Any, params: Params) -> dict[str, Any]:
    """The trial's hyperparameters from the ranges in `tune.*` (the LoRA rank only when LoRA is on)."""
    tune = params.tune
    chosen = {
        "learning_rate": trial.suggest_float(
            "learning_rate", tune.learning_rate.low, tune.learning_rate.high, log=tune.learning_rate.log
        ),
        "epochs": trial.suggest_float("epochs", tune.epochs.low, tune.epochs.high, log=tune.epochs.log),
        "warmup_steps": trial.suggest_int(
            "warmup_steps", int(tune.warmup_steps.low), int(tune.warmup_steps.high), log=tune.warmup_steps.log
        ),
    }
    if params.train.common.lora.enabled:
        chosen["lora_r"] = trial.suggest_int("lora_r", int(tune.lora_r.low), int(tune.lora_r.high), log=tune.lora_r.log)
    return chosen


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def objective(trial: Any, params: Params, split: SplitRows, worker: int = 0) -> float:
    """Train SFT with the trial's hyperparameters for `tune.max_steps`; the final held-out loss."""
    import mlflow
    import optuna

    from janus_align.tracking import run_tags

    chosen = suggest(trial, params)
    common = params.train.common.model_copy(update={"eval_steps": params.tune.eval_steps})
    settings = dataclasses.replace(resolve(params, "sft", chosen), max_steps=params.tune.max_steps, common=common)
    parent = os.environ.get(PARENT_RUN_ENV)
    run = mlflow.start_run(run_name=f"trial-{trial.number}", parent_run_id=parent, nested=True)
    mlflow.set_tags(
        {**run_tags("tune", params), "kind": "trial", "trial": str(trial.number), "study": trial.study.study_name}
    )
    mlflow.log_params({f"hp/{key}": value for key, value in chosen.items()})
    trial.set_user_attr("mlflow_run_id", run.info.run_id)
    trial.set_user_attr("worker", worker)
    try:
        value = _trial_value(trial, params, settings, split)
    except optuna.TrialPruned:
        mlflow.set_tag("trial_state", "pruned")
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.log_metric("objective", value)
    mlflow.set_tag("trial_state", "complete")
    mlflow.end_run()
    return value


def _trial_value(trial: Any, params: Params, settings: RecipeSettings, split: SplitRows) -> float:
    """The held-out loss, or minus the bench score of the trial's model (`tune.objective`)."""
    import mlflow

    from janus_align.train.checkpoints import require_checkpoint
    from janus_align.train.run_recipe import fit
    from janus_align.train.train_sft import build_trainer

    base = require_checkpoint(paths.BASE_MODEL, "prepare_model")
    callbacks = [PruneOnEvalLoss(trial)]
    if params.tune.objective == "eval_loss":
        loss = _held_out_loss(fit(params, settings, split, build_trainer, base, out=None, callbacks=callbacks))
        trial.set_user_attr("eval_loss", loss)
        return loss
    from janus_align.evaluate.bench_score import bench_score

    with tempfile.TemporaryDirectory(prefix="janus-trial-") as scratch:
        checkpoint = Path(scratch) / "model"
        trial.set_user_attr(
            "eval_loss",
            _held_out_loss(fit(params, settings, split, build_trainer, base, checkpoint, callbacks=callbacks)),
        )
        score = bench_score(params, checkpoint, f"trial-{trial.number}")
    if score is None:
        raise TuneError(f"trial {trial.number}: the judge scored none of the bench items (see judge.* params)")
    mlflow.log_metric("bench_score", score)
    trial.set_user_attr("bench_score", score)
    return -score


def _held_out_loss(metrics: dict[str, Any]) -> float:
    if "eval_loss" not in metrics:
        raise TuneError(
            "tune: no held-out SFT row survived the trainer's preprocessing (answers cut away by "
            "train.common.max_length?); raise train.common.eval_fraction or max_length"
        )
    return metrics["eval_loss"]


def optimize(params: Params, worker: int = 0) -> None:
    """Run trials on the shared study until `tune.n_trials` have completed or been pruned."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    split = load_split("sft", params.train.common.eval_fraction, params.seed)
    study = open_study(params, worker)
    if _finished(study) >= params.tune.n_trials:
        return
    study.optimize(
        lambda trial: objective(trial, params, split, worker),
        callbacks=[MaxTrialsCallback(params.tune.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
        gc_after_trial=True,
    )


def _check(params: Params) -> SplitRows:
    if params.tune.objective == "bench":
        if not paths.BENCH_FILE.is_file():
            raise TuneError(f"tune.objective: bench needs {paths.BENCH_FILE}; run `janus bench` first")
    split = load_split("sft", params.train.common.eval_fraction, params.seed)
    if not split.eval:
        raise TuneError("train.common.eval_fraction: the tune objective needs held-out SFT rows; set it above 0")
    return split


def _spawn_workers(params: Params, count: int, scratch: Path) -> list[subprocess.Popen]:
    """Start `count` worker processes on the study; they log trials under the active run.

    This process only waits: workers that start together share the trials evenly (one already
    warm would otherwise run most of them before the others have imported torch).
    """
    import mlflow

    workers = []
    env = dict(os.environ)
    run = mlflow.active_run()
    if run is not None:
        env[PARENT_RUN_ENV] = run.info.run_id
    threads = str(max(1, (os.cpu_count() or 1) // count))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    params_file = scratch / "params.json"
    params_file.write_text(params.model_dump_json(), encoding="utf-8")
    for index in range(count):
        command = [sys.executable, "-m", "janus_align.train.tune", "--worker", str(index), str(params_file)]
        workers.append(subprocess.Popen(command, env=env))
    return workers


def best_params(params: Params) -> dict[str, Any]:
    """What best_params.json holds: the winner's hyperparameters, loss, trial and study."""
    from optuna.trial import TrialState

    study = open_study(params)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise TuneError(f"study {study.study_name}: no completed trial (all pruned or failed); raise tune.n_trials")
    best = study.best_trial
    counts = {state.name.lower(): 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for trial in study.get_trials(deepcopy=False):
        key = trial.state.name.lower()
        if key in counts:
            counts[key] += 1
    return {
        "params": best.params,
        "objective": params.tune.objective,
        "eval_loss": best.user_attrs.get("eval_loss", best.value),
        "bench_score": best.user_attrs.get("bench_score"),
        "trial": best.number,
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
        "study": study.study_name,
        "storage": params.tune.storage,
        "trials": counts,
    }


def run(params: Params, workers: int = 1) -> dict[str, Any]:
    import mlflow

    from janus_align.train.mlflow_logging import log_split

    if workers < 1:
        raise TuneError(f"--workers must be >= 1, got {workers}")
    log_split(_check(params))
    run_ = mlflow.active_run()
    if run_ is not None:
        os.environ[PARENT_RUN_ENV] = run_.info.run_id
    codes: list[int] = []
    if workers == 1:
        optimize(params, worker=0)
    else:
        with tempfile.TemporaryDirectory(prefix="janus-tune-") as scratch:
            processes = _spawn_workers(params, workers, Path(scratch))
            try:
                codes = [process.wait() for process in processes]
            except BaseException:  # Ctrl-C: stop the workers too (their finished trials are kept)
                for process in processes:
                    process.terminate()
                raise
    if any(codes):
        raise TuneError(f"tune: {sum(1 for c in codes if c)} worker process(es) failed (see their output above)")
    result = best_params(params)
    write_json(paths.BEST_PARAMS, result)
    scores = {"best_eval_loss": result["eval_loss"], "best_trial": result["trial"]}
    if result["bench_score"] is not None:
        scores["best_bench_score"] = result["bench_score"]
    write_json(
        paths.TUNE_METRICS,
        {
            **scores,
            **{f"trials_{k}": v for k, v in result["trials"].items()},
            **{f"best_{k}": v for k, v in result["params"].items()},
        },
    )
    if run_ is not None:
        mlflow.log_params({f"best/{k}": v for k, v in result["params"].items()} | {"study": result["study"]})
        mlflow.log_metrics(scores)
    won = (
        f"bench score {result['bench_score']:.3f}"
        if result["bench_score"] is not None
        else f"eval_loss {result['eval_loss']:.4f}"
    )
    print(f"tune: best {won} (trial {result['trial']}) {result['params']} -> {paths.BEST_PARAMS}")
    return result


def main(argv: list[str] | None = None) -> int:
    """A local worker process: `python -m janus_align.train.tune --worker N PARAMS_JSON`."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 3 or args[0] != "--worker":
        print("usage: python -m janus_align.train.tune --worker N PARAMS_JSON", file=sys.stderr)
        return 2
    params = Params.model_validate_json(Path(args[2]).read_text(encoding="utf-8"))
    from janus_align.tracking import configure

    configure(params)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    optimize(params, worker=int(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
