"""Shared fixtures: a throwaway project on the ci profile (tiny random model), and a way to run
`janus` in it as a user would (a subprocess in the project directory)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
# Lines a test module wants shown after the run, whatever the capture mode (the fault suite's figures).
SUMMARY_LINES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)


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


def sh(project: Path, *cmd: str, timeout: float = 1800, **env: str) -> subprocess.CompletedProcess:
    """Run a command in `project` with janus' environment (plus `env`); fail the test if it fails."""
    done = subprocess.run(list(cmd), cwd=project, env=janus_env(**env), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    )
    return done


def fresh_clone(target: Path) -> Path:
    """The repository's files as git would clone them (tracked and not ignored), nothing built."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    sh(target, "git", "init", "-q")
    sh(target, "git", "add", "-A")
    sh(target, "git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "clone")
    return target


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` on loopback with its own backend store and artifact root; yields its URI.

    The one worker and no job runner of `make ui` (STACK.md: up in ~6 s), run by the lifecycle
    our own loopback servers use (llm/local_server.py): free port, health wait, SIGTERM.
    """
    from janus_align.errors import JanusError
    from janus_align.llm.local_server import ServerProcess

    root.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(
        "mlflow server",
        lambda port: [
            "env",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
            "MLFLOW_DISABLE_TELEMETRY=true",
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        root / "server.log",
        JanusError,
        stop_timeout_s=30,
    )
    try:
        server.wait_until_healthy(120, "its store")
        yield server.base_url
    finally:
        server.stop()
