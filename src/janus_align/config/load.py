"""Load params.yaml and turn every validation problem into one readable line per key."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from janus_align.config.schema import Params
from janus_align.errors import JanusError
from janus_align.records import read_text

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(JanusError, ValueError):
    """params.yaml is unreadable or invalid; the message names the file and each bad key."""


def _section(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _variants(field: FieldInfo) -> dict[str, type[BaseModel]]:
    """{backend: settings type} of a field chosen by a discriminator (empty for any other field)."""
    if field.discriminator is None:
        return {}
    found = {}
    for member in typing.get_args(field.annotation):
        tag = member.model_fields[str(field.discriminator)].default
        found[str(tag)] = member
    return found


def _walk(loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """The key path of pydantic's `loc` without the backend tags it inserts, and the section it ends in."""
    section: type[BaseModel] | None = Params
    path: list[str] = []
    variants: dict[str, type[BaseModel]] = {}
    for part in loc:
        if variants:  # a discriminated union names the chosen variant in the loc: not a key of the file
            section, variants = variants.get(str(part)), {}
            continue
        path.append(str(part))
        field = section.model_fields.get(str(part)) if section else None
        section = _section(field.annotation) if field else None
        variants = _variants(field) if field else {}
    return path, section


def _describe(error: ErrorDetails) -> str:
    path, _ = _walk(error["loc"])
    key_path = ".".join(path) or "<root>"
    kind = error["type"]
    if kind == "extra_forbidden":
        _, section = _walk(error["loc"][:-1])
        known = list(section.model_fields) if section else []
        close = difflib.get_close_matches(path[-1], known, n=1)
        return f"{key_path}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return f"{key_path}: required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        _, parent = _walk(error["loc"][:-1])
        field = parent.model_fields[path[-1]] if parent else None
        key = str(field.discriminator) if field else "backend"
        tags = [repr(tag) for tag in (_variants(field) if field else {})]
        allowed = f"{', '.join(tags[:-1])} or {tags[-1]}" if len(tags) > 1 else "".join(tags)
        if kind == "union_tag_not_found":
            return f"{key_path}.{key}: required key is missing (one of {allowed})"
        return f"{key_path}.{key}: must be {allowed}, got {error.get('ctx', {}).get('tag')!r}"
    message = error["msg"]
    for verbose, short in (("Input should be ", "must be "), ("Value error, ", "")):
        message = message.replace(verbose, short)
    message = message.replace("greater than or equal to", ">=").replace("less than or equal to", "<=")
    message = message.replace("greater than", ">").replace("less than", "<")
    return f"{key_path}: {message}, got {error['input']!r}"


def missing_sections(raw: dict[str, Any], section: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    """Key paths of the sections (mappings) a params file must hold but `raw` lacks.

    A file states the whole recipe: a deleted section is an error, never the defaults. Inside an
    LLM's settings only the backend's own keys apply, so their sub-mappings may be left out.
    """
    missing = []
    for name, field in section.model_fields.items():
        nested = _section(field.annotation)
        if section is Params or nested is not None or _variants(field):
            if name not in raw:
                missing.append(f"{prefix}{name}")
            elif nested is not None and isinstance(raw[name], dict):
                missing += missing_sections(raw[name], nested, f"{prefix}{name}.")
    return missing


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-parsed params file; raise ConfigError naming every bad or missing key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    lines = [f"{key}: required section is missing" for key in missing_sections(raw)]
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        lines += [_describe(err) for err in exc.errors()]
    if lines:
        raise ConfigError(f"{source}: {len(lines)} invalid setting(s)\n  " + "\n  ".join(lines))
    return params


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate a params file.

    >>> load_params("params.yaml").teacher.batch_size  # doctest: +SKIP
    96
    """
    path = Path(path)
    return parse_params(read_yaml(path), str(path))


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key repeated within one mapping.

    Why: safe_load keeps the last of two `seed:` lines silently, so an edit above a forgotten
    line of the same name changes nothing. YAML itself requires unique keys; the error names
    both lines and the key's path from the top of the file. Keys brought in by a `<<` merge may
    be overridden, as YAML defines.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._document = node  # where the key path of a repeated key is looked up from
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, typing.Hashable) and key in first_lines:
                    key_path = _dotted([*(_path_to(self._document, node) or []), str(key)])
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key_path} is repeated: line {first_lines[key]} and line {line} (keep one)",
                        key_node.start_mark,
                    )
                first_lines.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def _path_to(root: yaml.Node, target: yaml.Node) -> list[str] | None:
    """Key path from `root` to the node `target`: mapping keys, `[i]` for the i-th item of a list."""
    if root is target:
        return []
    children: list[tuple[str, yaml.Node]] = []
    if isinstance(root, yaml.MappingNode):
        children = [(str(key.value), value) for key, value in root.value]
    elif isinstance(root, yaml.SequenceNode):
        children = [(f"[{index}]", item) for index, item in enumerate(root.value)]
    for name, child in children:
        below = _path_to(child, target)
        if below is not None:
            return [name, *below]
    return None


def _dotted(parts: list[str]) -> str:
    """`["train", "common", "seed"]` -> "train.common.seed"; list items as `items[0]`."""
    return "".join(part if part.startswith("[") else f".{part}" for part in parts).lstrip(".")


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error or a repeated key names the file, line and column."""
    path = Path(path)
    text = read_text(path, ConfigError, "file not found (run from the project root)")
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error(path, exc)) from None


def yaml_error(path: str | Path, exc: yaml.YAMLError) -> str:
    """`FILE:LINE:COLUMN: not valid YAML (problem)` for a YAML error, a repeated key included."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    return f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
