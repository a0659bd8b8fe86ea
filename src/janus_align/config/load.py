"""Load params.yaml and turn every validation problem into one readable line per key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from janus_align.config.schema import Params
from janus_align.errors import JanusError

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(JanusError, ValueError):
    """params.yaml is unreadable or invalid; the message names the file and each bad key."""


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the section holding `loc` accepts (empty when it is not a plain section)."""
    section: type[BaseModel] = Params
    for part in loc[:-1]:
        field = section.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        section = annotation
    return list(section.model_fields)


def _describe(error: dict[str, Any]) -> str:
    key_path = ".".join(str(part) for part in error["loc"]) or "<root>"
    kind = error["type"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(error["loc"]), n=1)
        return f"{key_path}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return f"{key_path}: required key is missing"
    message = error["msg"]
    for verbose, short in (("Input should be ", "must be "), ("Value error, ", "")):
        message = message.replace(verbose, short)
    message = message.replace("greater than or equal to", ">=").replace("less than or equal to", "<=")
    message = message.replace("greater than", ">").replace("less than", "<")
    return f"{key_path}: {message}, got {error['input']!r}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-parsed mapping; raise ConfigError naming every bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise ConfigError(f"{source}: {len(lines)} invalid setting(s)\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate a params file.

    >>> load_params("params.yaml").teacher.max_concurrency  # doctest: +SKIP
    8
    """
    path = Path(path)
    return parse_params(read_yaml(path), str(path))


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the project root)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
