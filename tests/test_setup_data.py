"""`janus setup-data` called as a venv's tool is often called: by path, the venv not on PATH."""

from __future__ import annotations

from pathlib import Path

from conftest import BIN, run_janus
from test_pipeline_e2e import fresh_clone, sh


def test_setup_data_by_path_without_the_venv_on_path_runs_the_venvs_dvc(tmp_path: Path) -> None:
    project = fresh_clone(tmp_path / "clone")
    assert not (Path("/usr/bin") / "dvc").exists() and not (Path("/bin") / "dvc").exists()
    done = run_janus(project, "setup-data", check=False, PATH="/usr/bin:/bin")
    assert done.returncode == 0, done.stderr
    assert "materialized from the bundled defaults" in done.stdout
    assert "up to date" in sh(project, str(BIN / "dvc"), "status", "data.dvc").stdout  # its dvc commit ran
