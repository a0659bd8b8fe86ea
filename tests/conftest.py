"""Shared fixtures: a throwaway project on the ci profile (tiny random model), and a way to run
`janus` in it as a user would (a subprocess in the project directory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_WAIT_POLICY": "PASSIVE",
}
os.environ.update(OFFLINE_ENV)


def janus_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **OFFLINE_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # each project uses its own sqlite store, unless a test names one
    return env | extra


def run_janus(project: Path, *args: str, check: bool = True, timeout: float = 600, **env: str):
    """Run `janus ARGS` in `project`; return the CompletedProcess (stdout+stderr captured)."""
    done = subprocess.run(
        [str(BIN / "janus"), *args], cwd=project, env=janus_env(**env), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"janus {' '.join(args)} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


def make_project(target: Path, profile: str | None = "ci") -> Path:
    """A fresh project directory: params (profile applied), profiles/, dvc.yaml, data/."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, target / name)
    shutil.copytree(REPO / "profiles", target / "profiles")
    shutil.copytree(REPO / "src" / "janus_align" / "default_data", target / "data")
    if profile and profile != "default":
        run_janus(target, "use-profile", profile)
    return target


@pytest.fixture(scope="session")
def ci_base_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ci-profile project with the tiny random base model prepared (built once per session).

    Treat it as read-only; copy it with `clone_project` to run stages that write.
    """
    project = make_project(tmp_path_factory.mktemp("ci-base"))
    run_janus(project, "prepare_model")
    return project


def clone_project(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", ".cache"))
    return target


@pytest.fixture
def ci_project(ci_base_project: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the prepared ci project."""
    return clone_project(ci_base_project, tmp_path / "project")
