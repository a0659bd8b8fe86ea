"""Profiles are partial overlays (profiles/<name>.yaml) merged onto params.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from janus_align.config.load import DEFAULT_PARAMS, parse_params, read_yaml
from janus_align.errors import JanusError

PROFILES_DIR = Path("profiles")


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay wins key by key; nested mappings merge, everything else is replaced.

    A mapping that switches `backend` (an LLM's settings: teacher, judge.llm) replaces the base's
    mapping whole: each backend has its own keys, and the old backend's would be unknown keys.
    """
    merged = dict(base)
    for key, value in overlay.items():
        current = merged.get(key)
        switches_backend = isinstance(value, dict) and isinstance(current, dict) and _switches_backend(current, value)
        if isinstance(value, dict) and isinstance(current, dict) and not switches_backend:
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _switches_backend(base: dict[str, Any], overlay: dict[str, Any]) -> bool:
    return "backend" in overlay and overlay["backend"] != base.get("backend")


def profile_params(name: str, base: Path = DEFAULT_PARAMS, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any]:
    """params.yaml with profile `name` applied, validated (raises ConfigError naming keys)."""
    overlay_path = profiles_dir / f"{name}.yaml"
    if not overlay_path.is_file():
        known = sorted(p.stem for p in profiles_dir.glob("*.yaml"))
        raise JanusError(f"{overlay_path}: no such profile (known: {', '.join(known) or 'none'})")
    current, overlay = read_yaml(base) or {}, read_yaml(overlay_path) or {}
    applied, target = current.get("profile", "default"), overlay.get("profile")
    if target and applied not in ("default", target):
        # Overlays are partial: a profile applied on top of another would keep the first one's
        # keys. (An overlay without `profile:` is a tweak, layered on whatever is there.)
        raise JanusError(
            f"{base} holds profile {applied!r}; restore the default first "
            f"(`git checkout {base}`), then `janus use-profile {name}`"
        )
    merged = deep_merge(current, overlay)
    parse_params(merged, f"{base} + {overlay_path}")
    return merged


def main(args: argparse.Namespace) -> None:
    merged = profile_params(args.name)
    # An overlay without `profile:` leaves the profile it layered on in place: say both.
    named = (
        f"profile {args.name}"
        if merged.get("profile") == args.name
        else (f"profile {merged.get('profile', 'default')} + overlay {args.name}")
    )
    header = f"# {named}, written by `janus use-profile`; `git checkout params.yaml` restores the default.\n"
    DEFAULT_PARAMS.write_text(header + yaml.safe_dump(merged, sort_keys=False))
    print(f"params.yaml now holds {named}")
