"""The whole pipeline as a newcomer runs it: a fresh copy of the repository with no data/ and no
DVC remote, `janus setup-data`, then `dvc repro` on the ci profile (tiny random model)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, janus_env, run_janus


def sh(project: Path, *cmd: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    done = subprocess.run(list(cmd), cwd=project, env=janus_env(), capture_output=True, text=True, timeout=timeout)
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
    project = fresh_clone(tmp_path / "clone")
    run_janus(project, "setup-data")
    run_janus(project, "use-profile", "ci")

    # As `make repro` runs it: stages forked from one preloaded process once its imports are done.
    preloaded = sh(project, "janus", "preload", "--", "dvc", "repro")
    assert "janus preload: serving after" in preloaded.stderr
    log = preloaded.stdout + preloaded.stderr
    assert "nanobind" not in log and "is empty." not in log  # nothing at exit, no warning on empty outputs

    status = sh(project, "dvc", "status").stdout
    assert "up to date" in status, status
    started = time.perf_counter()
    second = sh(project, "dvc", "repro").stdout
    assert time.perf_counter() - started < 10
    assert "Running stage" not in second

    validation = json.loads((project / "metrics" / "validation.json").read_text())
    assert validation["success"] is True
    board = json.loads((project / "metrics" / "leaderboard.json").read_text())
    assert {"base", "sft", "sft_small", "dpo", "orpo"} <= set(board["models"])
    register = json.loads((project / "metrics" / "register.json").read_text())
    assert register["champion_version"] is not None
    summary = run_janus(project, "summary").stdout
    assert "@champion" in summary and "make ui" in summary
