"""Find the command-line tools installed with this package (dvc, llama-server) in its own environment.

Why: a venv's tool is often called by path (`.venv/bin/janus setup-data`) with the venv not on
PATH; looking up `dvc` on PATH would then miss the dvc installed beside janus, or run another
one. The tools the project installs live in the scripts folder of the interpreter running janus
(`sysconfig`'s "scripts" path, the venv's bin/), so that folder is searched first, PATH after.

>>> installed_tool("dvc")  # doctest: +SKIP
'.../.venv/bin/dvc'
"""

from __future__ import annotations

import os
import shutil
import sysconfig


def scripts_dir() -> str:
    """The folder where this interpreter's environment installs console scripts (the venv's bin/)."""
    return sysconfig.get_path("scripts")


def installed_tool(name: str) -> str | None:
    """The path of tool `name`: this environment's own first, then PATH; None when neither has it."""
    return shutil.which(name, path=os.pathsep.join([scripts_dir(), os.environ.get("PATH", os.defpath)]))
