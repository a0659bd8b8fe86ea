"""Stage `register`: the best trained model becomes a version of registered model `janus`.

The winner is the trained chat model (sft, sft_small, dpo, orpo; not the base, not the reward
model, not API models) with the highest bench average in metrics/leaderboard.json. Its version
carries tags (bench average, per-dimension scores, data version, git commit, training run id)
and a description.

One version per set of weights: a version's tag `checkpoint_sha` is its checkpoint's fingerprint
(the one the LLM cache keys on, `checkpoint_fingerprint`), and weights registered before reuse
their version, whose score tags are brought up to date, instead of making a new one (re-judging
the same model with other judge settings is a new score, not a new model).

The promotion gate is a paired comparison on the same bench items: `champion` moves to the
winner's version only when the percentile bootstrap (resampling items, `report.bootstrap_samples`
at `report.confidence`) of the mean per-item difference (challenger - champion) has its lower
bound above `registry.min_gain`; the former champion then gets alias `previous`. Otherwise the
version gets alias `challenger`. The champion's per-item scores are this run's when its weights
are on the leaderboard, else those its registration stored (`register/item_scores.json` in the
run named by the version's `item_scores_run` tag). A champion judged on another bench
(`bench_sha`) or by another judge (model id and prompt template), or one registered without item
scores, is not compared: the challenger stays `challenger` and the stage says why. The evidence
(difference, interval, items, against which version) goes to the version's `evidence/*` tags and
to metrics/register.json. Only leaderboard contenders (scored, unscored share within
`judge.max_unscored_rate`) can win. Inside `dvc exp run`
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
        if isinstance(entry, dict) and entry.get("contender") is False:
            continue  # too many unscored verdicts (judge.max_unscored_rate): its average is not evidence
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
    models = read_leaderboard(leaderboard)
    board = read_json_object(leaderboard, "not found (run the report stage first)", error=RegistryError)
    candidate, entry, score = pick_winner(models, leaderboard)
    record = read_train_record(paths.model_dir(candidate))
    checkpoint_sha = checkpoint_fingerprint(paths.model_dir(candidate))
    experiment = dvc_experiment()
    client = MlflowClient()
    champion = _current(client, name, CHAMPION)
    identity = evidence_identity(board, entry)
    stored = store_item_scores(identity, entry)
    tags = {**_tags(candidate, entry, score, record, params), CHECKPOINT_TAG: checkpoint_sha, **stored}
    same_weights = champion is not None and champion.tags.get(CHECKPOINT_TAG) == checkpoint_sha
    evidence = None if champion is None or same_weights else compare(champion, identity, entry, models, params)
    if evidence is not None:
        tags.update({f"evidence/{key}": str(value) for key, value in evidence.items() if key != "item_ids"})
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
    if champion is None:
        evidence_ok = True  # nothing to beat: the first trained model becomes champion
    else:
        evidence_ok = evidence is not None and evidence["compared"] and evidence["promote"]
    promoted = not experiment and not is_champion and evidence_ok
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
        "min_gain": params.registry.min_gain,
        "evidence": evidence,
    }
    if mlflow.active_run() is not None:
        mlflow.log_metrics({"registered_version": result["version"], "promoted": float(promoted), SCORE_TAG: score})
        if evidence and evidence["compared"]:
            mlflow.log_metrics({f"evidence_{k}": evidence[k] for k in ("difference", "ci_low", "ci_high", "items")})
        mlflow.set_tags({"registered_model": name, "registered_candidate": candidate})
    return result


ITEM_SCORES_RUN_TAG = "item_scores_run"
ITEM_SCORES_ARTIFACT = "register/item_scores.json"


def evidence_identity(board: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """What makes two scores comparable: the bench file's sha and the judge (model id, prompt template)."""
    return {
        "bench_sha": board.get("bench_sha"),
        "judge_model": entry.get("judge_model"),
        "judge_template": entry.get("judge_template"),
    }


def store_item_scores(identity: dict[str, Any], entry: dict[str, Any]) -> dict[str, str]:
    """Log this winner's per-item scores in the active run (a later challenger is compared against
    them); the version tags that find them again ({} without an active run or item scores)."""
    import mlflow

    run = mlflow.active_run()
    if run is None or not isinstance(entry.get("item_scores"), dict):
        return {}
    mlflow.log_dict({**identity, "item_scores": entry["item_scores"]}, ITEM_SCORES_ARTIFACT)
    return {ITEM_SCORES_RUN_TAG: run.info.run_id, **{k: str(v) for k, v in identity.items() if v is not None}}


def _champion_item_scores(
    champion: Any, models: dict[str, dict[str, Any]], identity: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """(the champion's per-item scores, where they came from) or (None, why not comparable)."""
    from janus_align.llm.transformers_backend import checkpoint_fingerprint

    name = champion.tags.get("candidate")
    entry = models.get(name) if name else None
    if isinstance(entry, dict) and isinstance(entry.get("item_scores"), dict):
        directory = paths.model_dir(name)
        if directory.is_dir() and checkpoint_fingerprint(directory) == champion.tags.get(CHECKPOINT_TAG):
            return entry["item_scores"], f"this run's judgments of {name}"
    run_id = champion.tags.get(ITEM_SCORES_RUN_TAG)
    if not run_id:
        return None, f"champion v{champion.version} was registered without per-item scores"
    import mlflow

    try:
        data = mlflow.artifacts.load_dict(f"runs:/{run_id}/{ITEM_SCORES_ARTIFACT}")
    except Exception as exc:  # noqa: BLE001 - a deleted run or artifact: not comparable, said so
        return None, f"champion v{champion.version}'s item scores (run {run_id}) cannot be read: {exc}"
    for key in ("bench_sha", "judge_model", "judge_template"):
        if data.get(key) != identity.get(key):
            return None, (
                f"champion v{champion.version} was scored with {key} {data.get(key)!r}, this run with "
                f"{identity.get(key)!r}: another {'bench' if key == 'bench_sha' else 'judge'}, not compared"
            )
    return data.get("item_scores"), f"champion v{champion.version}'s registration (run {run_id})"


def paired_difference(
    challenger: dict[str, Any], champion: dict[str, Any], samples: int, confidence: float, seed: int
) -> dict[str, Any]:
    """Mean per-item difference (challenger - champion) over the items both scored, with its
    percentile bootstrap interval resampling items (so each resample keeps the pairs together)."""
    from janus_align.evaluate.scoring import bootstrap_ci

    ids = sorted(i for i, v in challenger.items() if v is not None and champion.get(i) is not None)
    diffs = [float(challenger[i]) - float(champion[i]) for i in ids]
    low, high = bootstrap_ci(diffs, samples, confidence, seed)
    return {
        "difference": sum(diffs) / len(diffs) if diffs else None,
        "ci_low": low,
        "ci_high": high,
        "items": len(ids),
        "confidence": confidence,
        "item_ids": ids,
    }


def compare(
    champion: Any, identity: dict[str, Any], entry: dict[str, Any], models: dict[str, dict[str, Any]], params: Params
) -> dict[str, Any]:
    """The paired comparison of the winner against the champion, or why there is none."""
    from janus_align.seeding import derive_seed

    base = {"against_version": int(champion.version), "min_gain": params.registry.min_gain}
    theirs, source = _champion_item_scores(champion, models, identity)
    ours = entry.get("item_scores")
    if theirs is None or not isinstance(ours, dict):
        reason = source if theirs is None else "this leaderboard has no per-item scores (rerun the report stage)"
        return {**base, "compared": False, "promote": False, "reason": reason}
    found = paired_difference(
        ours, theirs, params.report.bootstrap_samples, params.report.confidence, derive_seed(params.seed, "register")
    )
    if not found["items"]:
        return {**base, "compared": False, "promote": False, "reason": "no bench item scored for both models"}
    promote = found["ci_low"] is not None and found["ci_low"] > params.registry.min_gain
    return {**base, "compared": True, "promote": promote, "source": source, **found}


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
    evidence = result["evidence"]
    if evidence and evidence["compared"]:
        verdict += (
            f"; vs v{evidence['against_version']} on {evidence['items']} items: difference "
            f"{evidence['difference']:+.3f} [{evidence['ci_low']:+.3f}, {evidence['ci_high']:+.3f}] "
            f"({'above' if evidence['promote'] else 'not above'} registry.min_gain {evidence['min_gain']})"
        )
    elif evidence:
        verdict += f"; not compared with v{evidence['against_version']}: {evidence['reason']}"
    reused = " (these weights' version)" if result["reused_version"] else ""
    print(f"register: {result['candidate']} -> {result['name']} v{result['version']}{reused}, {verdict}")
    return result
