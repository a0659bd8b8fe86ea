"""Stage `register`: the best trained model becomes a version of registered model `janus`.

The winner is the trained chat model (sft, sft_small, dpo, orpo; not the base, not the reward
model, not API models) with the highest bench average in metrics/leaderboard.json. Its version
carries tags (bench average, per-dimension scores, data version, git commit, training run id)
and a description.

One version per set of weights: a version's tag `checkpoint_sha` is its checkpoint's fingerprint
(the one the LLM cache keys on, `checkpoint_fingerprint`), and weights registered before reuse
their version, whose score tags are brought up to date, instead of making a new one (re-judging
the same model with other judge settings is a new score, not a new model).

The promotion gate: alias `champion` moves to the winner's version only when its bench average
beats the current champion's (read from that version's `bench_average` tag); the former champion
then gets alias `previous`. Otherwise the version gets alias `challenger`. Inside `dvc exp run`
(DVC sets `DVC_EXP_NAME`) nothing has been applied to the workspace yet, so the gate is not
applied: the version becomes `challenger`, champion stays where it is, and a version registered
before keeps its score tags (an experiment's judge settings must not rewrite the scores the next
gate compares against). After `dvc exp apply`, `dvc repro -f -s register` puts it through the gate.

Scores are comparable only under one bench and judge; the version tags record the profile and
data version, so a team comparing across them can see it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from janus_align import headline_metrics, paths
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.models.train_record import TrainRecord, find_train_record, read_train_record
from janus_align.records import read_json_object, write_json

SCORE_TAG = "bench_average"
CHECKPOINT_TAG = "checkpoint_sha"
EXPERIMENT_TAG = "dvc_experiment"
CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


class RegistryError(JanusError, ValueError):
    """The leaderboard or the models cannot be registered; the message names the file or key."""


def _score(value: Any, where: str) -> float:
    if isinstance(value, dict):  # {"mean": x, "ci": [...]} is accepted as well as a bare number
        value = value.get("mean", value.get("score"))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegistryError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def read_leaderboard(path: Path = paths.LEADERBOARD) -> dict[str, dict[str, Any]]:
    """{model name: entry} from the report stage's leaderboard."""
    data = read_json_object(path, "not found (run the report stage first)", error=RegistryError)
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise RegistryError(f"{path}: key 'models' must map model names to their scores")
    return models


def pick_winner(
    models: dict[str, dict[str, Any]], source: Path = paths.LEADERBOARD
) -> tuple[str, dict[str, Any], float]:
    """(name, leaderboard entry, bench average) of the best trained chat model."""
    scored = []
    for name, entry in models.items():
        record = find_train_record(paths.model_dir(name))
        if record is None or record.kind == "reward":
            continue  # the base, API models and the reward model are not registry candidates
        if isinstance(entry, dict) and entry.get("overall") is None and "overall" in entry:
            continue  # every answer unscored: the model has no bench average to compete with
        scored.append(
            (
                _score(entry.get("overall") if isinstance(entry, dict) else None, f"{source}: models.{name}.overall"),
                name,
            )
        )
    if not scored:
        raise RegistryError(f"{source}: no trained model on the leaderboard has a checkpoint under {paths.MODELS}")
    score, name = max(scored)
    return name, models[name], score


def _current(client: Any, name: str, alias: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _tags(candidate: str, entry: dict[str, Any], score: float, record: TrainRecord, params: Params) -> dict[str, str]:
    from janus_align.tracking import data_version, git_commit

    tags = {
        SCORE_TAG: f"{score:.6g}",
        "candidate": candidate,
        "data_version": data_version(),
        "git_commit": git_commit(),
        "run_id": record.run_id or "",
        "profile": params.profile,
        "base_model": params.model.base,
        "prompt_format": record.prompt_format,
    }
    for dimension, value in (entry.get("per_dimension") or {}).items():
        try:
            tags[f"bench/{dimension}"] = f"{_score(value, dimension):.6g}"
        except RegistryError:
            continue  # an unscored dimension is left out rather than recorded as a number
    return tags


def _model_uri(candidate: str, record: TrainRecord, params: Params) -> str:
    """The training run's logged model; logged now (in the register run) if it has none or it is gone."""
    import mlflow

    uri = record.model_uri
    if uri:
        try:
            mlflow.get_logged_model(uri.removeprefix("models:/"))
            return uri
        except Exception:  # a fresh tracking store: the record outlived the model
            pass
    from janus_align.registry.chat_model import log_chat_model

    return log_chat_model(paths.model_dir(candidate), record.prompt_format, params, name=f"{candidate}-model")


def _version_of(client: Any, name: str, checkpoint_sha: str) -> Any:
    """The version registered for these weights before, or None."""
    found = client.search_model_versions(
        filter_string=f"name = '{name}' and tags.{CHECKPOINT_TAG} = '{checkpoint_sha}'"
    )
    return min(found, key=lambda version: int(version.version)) if found else None


def register(params: Params, leaderboard: Path = paths.LEADERBOARD) -> dict[str, Any]:
    """Register the winner (or reuse its weights' version) and apply the champion gate.

    Returns what metrics/register.json holds.
    """
    import mlflow
    from mlflow import MlflowClient

    from janus_align.llm.transformers_backend import checkpoint_fingerprint
    from janus_align.tracking import dvc_experiment

    name = params.mlflow.registered_model
    candidate, entry, score = pick_winner(read_leaderboard(leaderboard), leaderboard)
    record = read_train_record(paths.model_dir(candidate))
    checkpoint_sha = checkpoint_fingerprint(paths.model_dir(candidate))
    experiment = dvc_experiment()
    client = MlflowClient()
    champion = _current(client, name, CHAMPION)
    tags = {**_tags(candidate, entry, score, record, params), CHECKPOINT_TAG: checkpoint_sha}
    if experiment:
        tags[EXPERIMENT_TAG] = experiment
    description = (
        f"{candidate} ({record.stage or 'train_' + candidate}, profile {params.profile}): "
        f"bench average {score:.4g}; trained from {record.start_from}."
    )
    exists = bool(client.search_registered_models(filter_string=f"name = '{name}'"))
    version = _version_of(client, name, checkpoint_sha) if exists else None
    reused = version is not None
    if version is None:
        if not exists:
            client.create_registered_model(
                name,
                description="Janus: a model aligned to thousands of preferences through system messages. "
                "Aliases: champion (best bench average so far), previous (the champion before it), challenger "
                "(the latest version that did not beat the champion, or that a DVC experiment registered).",
            )
        version = mlflow.register_model(_model_uri(candidate, record, params), name, tags=tags)
        client.update_model_version(name, version.version, description=description)
    elif not experiment:  # the same weights, scored again: the version's scores are the latest ones
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.update_model_version(name, version.version, description=description)
    is_champion = champion is not None and str(champion.version) == str(version.version)
    champion_score = score if is_champion and not experiment else _champion_score(champion)
    promoted = not experiment and not is_champion and (champion_score is None or score > champion_score)
    previous = None
    if promoted:
        if champion is not None:
            client.set_registered_model_alias(name, PREVIOUS, champion.version)
            previous = int(champion.version)
        client.set_registered_model_alias(name, CHAMPION, version.version)
    elif not is_champion:
        client.set_registered_model_alias(name, CHALLENGER, version.version)
    result: dict[str, Any] = {
        "name": name,
        "version": int(version.version),
        "candidate": candidate,
        "bench_average": score,
        "checkpoint_sha": checkpoint_sha,
        "reused_version": reused,
        "dvc_experiment": experiment,
        "promoted": promoted,
        "alias": CHAMPION if promoted or is_champion else CHALLENGER,
        "champion_version": int(version.version) if promoted else (int(champion.version) if champion else None),
        "champion_bench_average": score if promoted else champion_score,
        "previous_version": previous,
        "model_uri": f"models:/{name}@{CHAMPION}",
    }
    if mlflow.active_run() is not None:
        mlflow.log_metrics({"registered_version": result["version"], "promoted": float(promoted), SCORE_TAG: score})
        mlflow.set_tags({"registered_model": name, "registered_candidate": candidate})
    return result


def _champion_score(champion: Any) -> float | None:
    if champion is None:
        return None
    try:
        return float(champion.tags[SCORE_TAG])
    except (KeyError, ValueError):
        # A version registered by hand without a score cannot be compared: the scored one wins.
        return None


def run(params: Params) -> dict[str, Any]:
    result = register(params)
    write_json(paths.REGISTER_METRICS, result)
    write_json(paths.CHAMPION_METRICS, headline_metrics.champion(result))
    if result["promoted"]:
        verdict = "now champion"
    elif result["alias"] == CHAMPION:
        verdict = "already champion"
    else:
        verdict = f"challenger (champion stays v{result['champion_version']})"
    if result["dvc_experiment"] and result["alias"] != CHAMPION:
        verdict += f"; DVC experiment {result['dvc_experiment']}: apply it, then `dvc repro -f -s register`"
    reused = " (these weights' version)" if result["reused_version"] else ""
    print(f"register: {result['candidate']} -> {result['name']} v{result['version']}{reused}, {verdict}")
    return result
