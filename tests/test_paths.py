"""dvc.yaml and the code spell every pipeline file the same way (issue 13, item 10): each out,
metric, plot and data dep of dvc.yaml is a path janus_align.paths spells (a per-candidate
function with `${item}` for foreach stages), and each file paths.py names under artifacts/,
metrics/, plots/ or reports/ lies in some stage's outputs."""

from __future__ import annotations

import inspect
from pathlib import Path, PurePosixPath

import yaml

from conftest import REPO
from janus_align import paths

DVC_FILE = REPO / "dvc.yaml"
OUTPUT_ROOTS = {str(root) for root in (paths.ARTIFACTS, paths.METRICS, paths.PLOTS, paths.REPORTS)}


def _entries(section: list) -> list[str]:
    """A dvc.yaml list of paths: plain strings or one-key mappings (`metrics/x.json: {cache: false}`)."""
    return [next(iter(entry)) if isinstance(entry, dict) else str(entry) for entry in section or []]


def _dvc_paths() -> dict[str, list[tuple[str, str]]]:
    """{"outs"/"deps": [(stage, path)]} over every stage of dvc.yaml, foreach templates included."""
    found: dict[str, list[tuple[str, str]]] = {"outs": [], "deps": []}
    for name, stage in yaml.safe_load(DVC_FILE.read_text())["stages"].items():
        body = stage.get("do", stage)
        for key in ("outs", "metrics", "plots"):
            found["outs"] += [(name, path) for path in _entries(body.get(key))]
        found["deps"] += [(name, path) for path in _entries(body.get("deps")) if not path.startswith("src/")]
    return found


def _constants() -> set[str]:
    return {str(value) for value in vars(paths).values() if isinstance(value, Path)}


def _templates() -> list[tuple[str, str, str]]:
    """(name, prefix, suffix) of each per-name path function: f(NAME) == prefix + NAME + suffix."""
    marker = "NAME"
    found = []
    for name, function in inspect.getmembers(paths, inspect.isfunction):
        if function.__module__ == paths.__name__:
            prefix, _, suffix = str(function(marker)).partition(marker)
            found.append((name, prefix, suffix))
    return found


def _spelled(path: str) -> bool:
    if path in _constants():
        return True
    for _, prefix, suffix in _templates():
        if path.startswith(prefix) and path.endswith(suffix):
            name = path[len(prefix) : len(path) - len(suffix)]
            if name and "/" not in name:
                return True
    return False


def test_every_path_dvc_yaml_names_is_spelled_by_paths_py() -> None:
    unknown = [(stage, path) for kind in ("outs", "deps") for stage, path in _dvc_paths()[kind] if not _spelled(path)]
    assert unknown == [], f"dvc.yaml names paths that janus_align.paths does not: {unknown}"


def test_foreach_stages_use_the_per_candidate_functions() -> None:
    outs = {path for _, path in _dvc_paths()["outs"]}
    for function in (paths.responses_file, paths.judgments_file, paths.official_file, paths.eval_metrics_file):
        assert str(function("${item}")) in outs, function.__name__


def _inside(path: PurePosixPath, other: PurePosixPath) -> bool:
    return path == other or other in path.parents or path in other.parents


def test_every_output_paths_py_names_lies_in_a_declared_dvc_output() -> None:
    """No stage writes a file under artifacts/, metrics/, plots/ or reports/ that DVC does not track."""
    outs = [PurePosixPath(path) for _, path in _dvc_paths()["outs"]]
    named = [PurePosixPath(path) for path in _constants() if PurePosixPath(path).parts[0] in OUTPUT_ROOTS]
    undeclared = sorted(str(path) for path in named if not any(_inside(path, out) for out in outs))
    assert undeclared == []


def test_the_helper_modules_that_spelled_paths_are_gone() -> None:
    package = REPO / "src" / "janus_align"
    assert not (package / "evaluate" / "files.py").exists()
    assert not (package / "synth" / "artifacts.py").exists()
