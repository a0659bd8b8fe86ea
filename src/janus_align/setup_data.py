"""`janus setup-data`: make data/ match data.dvc on a fresh clone.

With a DVC remote configured, data/ is pulled from it (the team's shared inputs). Without
one, the default inputs bundled in the package are copied in; they are byte-identical to what
data.dvc records, and `dvc commit` then fills the empty local cache so `dvc status` is clean.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from janus_align import paths
from janus_align.errors import JanusError
from janus_align.installed_tools import installed_tool, scripts_dir


def bundled_data_dir() -> Path:
    return Path(str(resources.files("janus_align") / "default_data"))


def _dvc(*args: str) -> subprocess.CompletedProcess:
    """Run the dvc installed with janus (requirements.txt pins it), even when its venv is not on PATH."""
    dvc = installed_tool("dvc")
    if dvc is None:
        raise JanusError(
            f"janus setup-data needs dvc, which is not installed beside janus ({scripts_dir()}) nor on PATH: "
            "run `make install` (or `pip install -r requirements.txt`)"
        )
    return subprocess.run([dvc, *args], capture_output=True, text=True)


def has_remote() -> bool:
    listed = _dvc("remote", "list")
    return listed.returncode == 0 and bool(listed.stdout.strip())


def _same_tree(left: Path, right: Path) -> bool:
    comparison = filecmp.dircmp(left, right)
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    return not mismatch and not errors and all(_same_tree(left / d, right / d) for d in comparison.common_dirs)


def materialize_bundled(target: Path = paths.DATA) -> bool:
    """Copy the bundled inputs into data/; True when something changed."""
    source = bundled_data_dir()
    if target.is_dir() and _same_tree(source, target):
        return False
    if target.exists():
        raise JanusError(
            f"{target}/ differs from the bundled defaults and no DVC remote is configured; "
            "keep your edits with `dvc add data`, or delete data/ to restore the defaults"
        )
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return True


def main(args: argparse.Namespace | None = None) -> None:
    if has_remote():
        pulled = _dvc("pull", str(paths.DATA_DVC_FILE))
        if pulled.returncode != 0:
            raise JanusError(f"dvc pull {paths.DATA_DVC_FILE} failed:\n{pulled.stderr.strip()}")
        print("setup-data: data/ restored from the DVC remote")
        return
    changed = materialize_bundled()
    if paths.DATA_DVC_FILE.is_file() and "not in cache" in _dvc("status", str(paths.DATA_DVC_FILE)).stdout:
        # A fresh clone has an empty cache: record the identical files so `dvc status` is clean.
        committed = _dvc("commit", "--force", str(paths.DATA_DVC_FILE))
        if committed.returncode != 0:
            raise JanusError(f"dvc commit {paths.DATA_DVC_FILE} failed:\n{committed.stderr.strip()}")
    print(f"setup-data: data/ {'materialized from' if changed else 'already matches'} the bundled defaults")
