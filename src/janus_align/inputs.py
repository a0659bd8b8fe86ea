"""Check the raw inputs under data/ before any stage spends time: every error names file and line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml

from janus_align import paths
from janus_align.config.load import UniqueKeyLoader, yaml_error
from janus_align.errors import JanusError
from janus_align.records import RecordError, iter_located, read_text

BENCH_GROUPS = ("AlpacaEval", "FLASK", "Koala", "MT-Bench", "Self-Instruct")
DIMENSIONS = ("style", "background_knowledge", "informativeness", "harmlessness")


class InputError(JanusError, ValueError):
    """A raw input file is missing or malformed."""


def _require_text(where: str, row: dict, key: str, optional: bool = False) -> None:
    value = row.get(key, "" if optional else None)
    if value is None:
        raise InputError(f"{where}: missing key {key!r}")
    if not isinstance(value, str):
        raise InputError(f"{where}: {key!r} must be a string, got {type(value).__name__}")


def instruction_files(directory: Path = paths.INSTRUCTIONS_DIR) -> list[Path]:
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise InputError(f"{directory}: no *.jsonl instruction files (run `make data` or `janus setup-data`)")
    return files


def check_instructions(directory: Path = paths.INSTRUCTIONS_DIR) -> Counter:
    """Rows per source over every pool file: keys `instruction`, `source`, optional `input`."""
    sources: Counter = Counter()
    for path in instruction_files(directory):
        try:
            for where, row in iter_located(path):
                _require_text(where, row, "instruction")
                _require_text(where, row, "source")
                _require_text(where, row, "input", optional=True)
                sources[row["source"]] += 1
        except RecordError as exc:
            raise InputError(str(exc)) from None
    return sources


def check_bench_prompts(path: Path = paths.BENCH_PROMPTS) -> Counter:
    groups: Counter = Counter()
    if not path.is_file():
        raise InputError(f"{path}: file not found (run `make data` or `janus setup-data`)")
    try:
        for where, row in iter_located(path):
            _require_text(where, row, "prompt")
            _require_text(where, row, "source")
            if row["source"] not in BENCH_GROUPS:
                raise InputError(f"{where}: source {row['source']!r} is not one of {list(BENCH_GROUPS)}")
            groups[row["source"]] += 1
    except RecordError as exc:
        raise InputError(str(exc)) from None
    return groups


def check_rubric_examples(path: Path = paths.RUBRIC_EXAMPLES) -> int:
    try:
        rubrics = json.loads(read_text(path, InputError))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: broken JSON ({exc.msg})") from None
    if not isinstance(rubrics, list) or len(rubrics) != 3:
        raise InputError(f"{path}: expected a list of exactly 3 example rubrics")
    for number, rubric in enumerate(rubrics):
        scores = rubric.get("score_descriptions") if isinstance(rubric, dict) else None
        if not isinstance(rubric, dict) or not isinstance(rubric.get("criteria"), str) or not isinstance(scores, dict):
            raise InputError(f"{path}: rubric {number} needs 'criteria' and 'score_descriptions'")
        if sorted(scores) != ["1", "2", "3", "4", "5"]:
            raise InputError(
                f"{path}: rubric {number} score_descriptions must have keys '1'..'5', got {sorted(scores)}"
            )
    return len(rubrics)


def load_taxonomy(path: Path = paths.TAXONOMY) -> dict[str, dict[str, list[str]]]:
    """dimension -> subdimension -> example preferences, checked for the four dimensions."""
    try:
        raw = yaml.load(read_text(path, InputError), Loader=UniqueKeyLoader)  # a repeated key is an error
    except yaml.YAMLError as exc:
        raise InputError(yaml_error(path, exc)) from None
    dimensions = (raw or {}).get("dimensions")
    if not isinstance(dimensions, dict) or sorted(dimensions) != sorted(DIMENSIONS):
        raise InputError(f"{path}: 'dimensions' must have exactly the keys {list(DIMENSIONS)}")
    taxonomy: dict[str, dict[str, list[str]]] = {}
    for dimension in DIMENSIONS:
        subdimensions = (dimensions[dimension] or {}).get("subdimensions")
        if not isinstance(subdimensions, dict) or not subdimensions:
            raise InputError(f"{path}: dimensions.{dimension}.subdimensions must be a non-empty mapping")
        for name, examples in subdimensions.items():
            if not isinstance(examples, list) or not examples or not all(isinstance(e, str) for e in examples):
                raise InputError(f"{path}: dimensions.{dimension}.subdimensions.{name} must be a list of strings")
        taxonomy[dimension] = subdimensions
    return taxonomy


def check_all() -> dict[str, object]:
    """Validate every raw input; return what was found, for `janus check` to print."""
    return {
        "instructions_per_source": dict(check_instructions()),
        "bench_prompts_per_group": dict(check_bench_prompts()),
        "rubric_examples": check_rubric_examples(),
        "taxonomy_subdimensions": {d: len(s) for d, s in load_taxonomy().items()},
    }
