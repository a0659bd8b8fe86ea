"""DVC's views stay readable (issue 19, item 4): dvc.yaml declares as metrics only the headline
files of `headline_metrics`, and those hold only the headline keys; every full record stays a
plain output (cache: false) that `dvc metrics show` / `dvc exp show` do not flatten."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from conftest import BIN, REPO, janus_env
from janus_align import headline_metrics, paths
from test_synth_trl import assembled  # noqa: F401  (the module-scoped fixture)

HEADLINE_FILES = {
    str(paths.COLLECTION_METRICS): "collection",
    str(paths.VALIDATION_RESULT): "validation_result",
    str(paths.SCORES_METRICS): "scores",
    str(paths.CHAMPION_METRICS): "champion",
}
FULL_RECORDS = [
    paths.INSTRUCTIONS_METRICS,
    paths.SYNTHESIS_METRICS,
    paths.VALIDATION_METRICS,
    paths.BENCH_METRICS,
    paths.TUNE_METRICS,
    paths.eval_metrics_file("${item}"),
    paths.LEADERBOARD,
    paths.REGISTER_METRICS,
]


def _stage_entries(key: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values():
        for entry in stage.get("do", stage).get(key) or []:
            path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            found[path] = options
    return found


def test_dvc_yaml_declares_only_the_headline_files_as_metrics() -> None:
    assert set(_stage_entries("metrics")) == set(HEADLINE_FILES)
    outs = _stage_entries("outs")
    for path in FULL_RECORDS:
        assert outs.get(str(path)) == {"cache": False}, path  # kept in git, out of the metrics views


def test_assemble_writes_only_the_collection_sizes_and_dvc_shows_only_them(assembled: Path) -> None:  # noqa: F811
    written = json.loads((assembled / paths.COLLECTION_METRICS).read_text())
    assert tuple(written) == headline_metrics.HEADLINE_KEYS["collection"]
    assert written["sft"] == 3 * written["sft_small"] and written["rm"] + written["rm_test"] == written["dpo"]
    env = janus_env()
    dvc = str(BIN / "dvc")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=assembled, env=env, check=True)
    shown = subprocess.run(
        [dvc, "metrics", "show", "--json"], cwd=assembled, env=env, check=True, capture_output=True, text=True
    )
    metrics = json.loads(shown.stdout)
    files = {path: shown for path, shown in next(iter(metrics.values()))["data"].items() if "data" in shown}
    assert set(files) == {str(paths.COLLECTION_METRICS)}  # the other headline files are not written yet
    assert set(files[str(paths.COLLECTION_METRICS)]["data"]) == set(written)


def test_the_other_writers_keep_only_the_headline_keys() -> None:
    validation = {
        "success": True,
        "splits": {
            s: {"rows": 4, "evaluated": 10, "successful": 9, "failed": 1, "success": True} for s in paths.SPLITS
        },
        "failures": [{"split": "sft", "expectation": "x"}],
    }
    assert headline_metrics.validation_result(validation) == {"success": True, "failed_expectations": 5}
    entry = {"overall": 3.5, "ci_low": 3.1, "ci_high": 3.9, "per_source": {"a": 3.0}, "unscored": 0}
    board = {
        "models": {"base": {**entry, "overall": 2.0}, "sft": entry},
        "ranking": ["sft", "base"],
        "confidence": 0.95,
    }
    scores = headline_metrics.scores(board)
    assert list(scores) == ["sft", "base"] and scores["sft"] == {"score": 3.5, "ci_low": 3.1, "ci_high": 3.9}
    assert all(tuple(v) == headline_metrics.HEADLINE_KEYS["scores"] for v in scores.values())
    register = {
        "name": "janus",
        "version": 2,
        "candidate": "sft",
        "bench_average": 3.4,
        "promoted": False,
        "champion_version": 1,
        "champion_bench_average": 3.5,
        "previous_version": None,
        "model_uri": "m",
    }
    champion = headline_metrics.champion(register)
    assert champion == {"version": 1, "bench_average": 3.5, "promoted": False}
