"""dvc.yaml read as data: its stages, and the params each one declares.

A module of its own so that what reads dvc.yaml at run time (tracking logs a stage's declared
params) and the `janus dvc-deps` tool share one reader, and a change to the tool's import walking
is no code dep of every stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from janus_align.errors import JanusError

DVC_FILE = Path("dvc.yaml")


def dvc_stages(dvc_file: Path = DVC_FILE) -> dict[str, dict[str, Any]]:
    """{dvc.yaml stage name: its body} (a foreach stage's `do` template), or an error naming the file."""
    try:
        stages = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["stages"]
        return {str(name): stage.get("do", stage) for name, stage in stages.items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise JanusError(f"{dvc_file}: cannot read its stages ({exc})") from None


def listed_params(dvc_file: Path = DVC_FILE) -> dict[str, list[str]]:
    """{stage name: the params.yaml keys dvc.yaml lists under its `params:`} (`judge`, `synth.min_text_chars`).

    An entry `{params.yaml: [keys]}` counts its keys; one naming another params file is not ours.
    """
    listed: dict[str, list[str]] = {}
    for name, body in dvc_stages(dvc_file).items():
        keys: list[str] = []
        for entry in body.get("params", []):
            if isinstance(entry, dict):
                keys += [str(key) for key in entry.get("params.yaml", [])]
            else:
                keys.append(str(entry))
        listed[name] = keys
    return listed
