"""Rows of a split or bench file -> one pandas DataFrame that the Great Expectations suites check.

Great Expectations checks flat columns, so everything nested is turned into derived columns
here: the dimensions of a preference set as one canonical string, the assistant turn of a
chosen/rejected conversation, whether the pair differs, whether a prompt leaks a bench prompt,
how many distinct system messages an instruction has. Nested originals are kept as JSON strings
(so a null stays a null and a sample row prints). `row_ref` ("file:row") lets every failure name
the offending rows.

Example:
    >>> frame = build_frame("sft_small", [row], bench_prompts=[])  # doctest: +SKIP
    >>> frame.loc[0, "preference_dimensions"]  # doctest: +SKIP
    'background_knowledge,harmlessness,informativeness,style'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from janus_align.errors import JanusError
from janus_align.inputs import DIMENSIONS
from janus_align.records import Row, iter_jsonl, iter_records

KINDS = ("sft", "sft_small", "dpo", "orpo", "rm", "bench")
SPLITS = ("sft", "sft_small", "dpo", "orpo", "rm")  # what the assemble stage writes
ROW_FILE_SUFFIXES = (".parquet", ".jsonl", ".json")

# The official columns of each kind (PAPER.md, "Released splits and schemas").
COLUMNS: dict[str, tuple[str, ...]] = {
    "sft": ("main_source", "original_source", "preference_set", "system", "prompt", "output"),
    "sft_small": ("main_source", "original_source", "preference_set", "system", "prompt", "output"),
    "dpo": ("main_source", "original_source", "system", "prompt", "chosen", "rejected"),
    "orpo": ("main_source", "original_source", "system", "prompt", "chosen", "rejected"),
    "rm": ("input", "chosen", "rejected"),
    "bench": ("source", "preference_set", "system", "prompt", "reference_answer", "rubrics"),
}
NESTED = ("preference_set", "rubrics")  # plus chosen/rejected in dpo and orpo
ROW_REF = "row_ref"  # "file:row" of each row, added by read_rows
# The columns build_frame derives, each with the file's columns it is computed from: they are
# the validator's, never reported as the user's file's.
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "preference_dimensions": ("preference_set",),
    "preference_shortest_text": ("preference_set",),
    "rubric_score_keys": ("rubrics",),
    "rubric_shortest_text": ("rubrics",),
    "chosen_roles": ("chosen",),
    "chosen_response": ("chosen",),
    "rejected_roles": ("rejected",),
    "rejected_response": ("rejected",),
    "pair_differs": ("chosen", "rejected"),
    "input_has_bench_prompt": ("input",),
    "prompt_has_bench_prompt": ("prompt",),
    "systems_per_prompt": ("prompt", "system"),
}
CONVERSATION_KINDS = ("dpo", "orpo")

# A preference set holds exactly one entry per dimension: sorted and joined, that is this string.
CANONICAL_DIMENSIONS = ",".join(sorted(DIMENSIONS))
RUBRICS_PER_ITEM = len(DIMENSIONS)
SCORE_KEYS = "1,2,3,4,5"
CANONICAL_RUBRIC_KEYS = "|".join([SCORE_KEYS] * RUBRICS_PER_ITEM)
PREFERENCE_TEXT_KEYS = ("dimension", "subdimension", "preference", "description")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Casefolded, whitespace-collapsed text: how prompts are compared with the bench prompts."""
    return _WHITESPACE.sub(" ", text).strip().casefold()


def load_bench_prompts(path: Path) -> list[str]:
    """Normalized prompts of a bench prompts file (`data/bench/prompts.jsonl`), longest first."""
    if not path.is_file():
        raise JanusError(f"{path}: bench prompts file not found (run `janus setup-data`)")
    prompts = {normalize_text(row["prompt"]) for row in iter_jsonl(path) if isinstance(row.get("prompt"), str)}
    return sorted((p for p in prompts if p), key=len, reverse=True)


def split_files(directory: Path) -> list[Path]:
    """The row files of one split folder (README.md and anything else is skipped)."""
    if not directory.is_dir():
        raise JanusError(f"{directory}: split folder not found (run `janus assemble` first)")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in ROW_FILE_SUFFIXES)
    if not files:
        raise JanusError(f"{directory}: no .parquet, .jsonl or .json row files")
    return files


def read_rows(files: Iterable[Path], root: Path | None = None) -> list[Row]:
    """Rows of every file, each tagged `row_ref` = "<file relative to root>:<1-based row>"."""
    rows: list[Row] = []
    for path in files:
        label = path.relative_to(root).as_posix() if root else path.name
        for number, row in enumerate(iter_records(path), start=1):
            rows.append({**row, ROW_REF: f"{label}:{number}"})
    return rows


def _as_json(value: Any) -> str | None:
    """Nested values as JSON text (None stays None), so the frame holds only scalars."""
    if value is None:
        return None
    if hasattr(value, "tolist"):  # numpy arrays from parquet readers other than ours
        value = value.tolist()
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _text_length(value: Any) -> int:
    """Length of a stripped string; 0 for anything that is not a string (null, number, list)."""
    return len(value.strip()) if isinstance(value, str) else 0


def preference_dimensions(preference_set: Any) -> str | None:
    """Sorted, comma-joined dimensions of a preference set; `CANONICAL_DIMENSIONS` when valid."""
    if preference_set is None:
        return None  # the not-null expectation on preference_set reports it
    if not isinstance(preference_set, list):
        return f"<not a list: {type(preference_set).__name__}>"
    names = [str(entry.get("dimension")) if isinstance(entry, dict) else "<not an object>" for entry in preference_set]
    return ",".join(sorted(names)) if names else "<empty>"


def preference_shortest_text(preference_set: Any) -> int | None:
    """Shortest text among the dimension/subdimension/preference/description of every entry."""
    if not isinstance(preference_set, list):
        return None
    lengths = [
        _text_length(entry.get(key)) if isinstance(entry, dict) else 0
        for entry in preference_set
        for key in PREFERENCE_TEXT_KEYS
    ]
    return min(lengths, default=0)


def rubric_score_keys(rubrics: Any) -> str | None:
    """Per rubric, its sorted score keys, joined by "|"; `CANONICAL_RUBRIC_KEYS` when valid."""
    if rubrics is None:
        return None
    if not isinstance(rubrics, list):
        return f"<not a list: {type(rubrics).__name__}>"
    shapes = []
    for rubric in rubrics:
        scores = rubric.get("score_descriptions") if isinstance(rubric, dict) else None
        shapes.append(",".join(sorted(str(key) for key in scores)) if isinstance(scores, dict) else "<no scores>")
    return "|".join(shapes) if shapes else "<empty>"


def rubric_shortest_text(rubrics: Any) -> int | None:
    """Shortest text among the criteria and score descriptions of every rubric."""
    if not isinstance(rubrics, list):
        return None
    lengths: list[int] = []
    for rubric in rubrics:
        if not isinstance(rubric, dict):
            lengths.append(0)
            continue
        lengths.append(_text_length(rubric.get("criteria")))
        scores = rubric.get("score_descriptions")
        if isinstance(scores, dict):
            lengths.extend(_text_length(text) for text in scores.values())
        else:
            lengths.append(0)
    return min(lengths, default=0)


def conversation_roles(messages: Any) -> str | None:
    """Comma-joined roles of a chosen/rejected conversation, e.g. "user,assistant"."""
    if not isinstance(messages, list):
        return None if messages is None else f"<not a list: {type(messages).__name__}>"
    return ",".join(str(m.get("role")) if isinstance(m, dict) else "<not an object>" for m in messages)


def assistant_reply(messages: Any) -> str | None:
    """The final assistant turn of a conversation: the response the pair is about."""
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        return None
    return last["content"]


def pair_differs(chosen: Any, rejected: Any) -> bool | None:
    """Whether two responses differ once whitespace is collapsed (a pair that differs only in
    spacing teaches nothing). None when either is missing: the not-null expectations report that."""
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        return None
    return _WHITESPACE.sub(" ", chosen).strip() != _WHITESPACE.sub(" ", rejected).strip()


def contains_bench_prompt(text: Any, bench_prompts: list[str]) -> bool | None:
    """Whether the normalized text contains a whole normalized bench prompt.

    Containment, not equality: an RM `input` is the system message followed by the prompt, and a
    prompt built as instruction + input may wrap a bench prompt.
    """
    if not isinstance(text, str):
        return None
    normalized = normalize_text(text)
    return any(prompt in normalized for prompt in bench_prompts)


def build_frame(kind: str, rows: list[Row], bench_prompts: list[str]) -> pd.DataFrame:
    """The frame the suite of `kind` validates: official columns (nested ones as JSON) plus
    derived ones. Missing official columns stay missing, so the column-set expectation names them."""
    if kind not in KINDS:
        raise JanusError(f"unknown kind {kind!r}; expected one of {list(KINDS)}")
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=[ROW_REF, *COLUMNS[kind]])
    if kind == "bench" and "rubrics" not in frame.columns and "rubric" in frame.columns:
        frame = frame.rename(columns={"rubric": "rubrics"})  # the key before June 2024
    derived: dict[str, list[Any]] = {}
    present = set(frame.columns)

    def column(name: str) -> list[Any]:
        return frame[name].tolist() if name in present else [None] * len(frame)

    if "preference_set" in COLUMNS[kind]:
        sets = column("preference_set")
        derived["preference_dimensions"] = [preference_dimensions(s) for s in sets]
        derived["preference_shortest_text"] = [preference_shortest_text(s) for s in sets]
    if kind == "bench":
        rubrics = column("rubrics")
        derived["rubric_score_keys"] = [rubric_score_keys(r) for r in rubrics]
        derived["rubric_shortest_text"] = [rubric_shortest_text(r) for r in rubrics]
    if kind in CONVERSATION_KINDS:
        for side in ("chosen", "rejected"):
            derived[f"{side}_roles"] = [conversation_roles(m) for m in column(side)]
            derived[f"{side}_response"] = [assistant_reply(m) for m in column(side)]
        derived["pair_differs"] = list(map(pair_differs, derived["chosen_response"], derived["rejected_response"]))
    if kind == "rm":
        derived["pair_differs"] = list(map(pair_differs, column("chosen"), column("rejected")))
        derived["input_has_bench_prompt"] = [contains_bench_prompt(t, bench_prompts) for t in column("input")]
    elif kind != "bench":
        derived["prompt_has_bench_prompt"] = [contains_bench_prompt(t, bench_prompts) for t in column("prompt")]
    if kind == "sft" and {"prompt", "system"} <= present:
        # nunique ignores null systems; rows with a null prompt get NaN, which GX skips (the
        # not-null expectation on prompt reports them).
        derived["systems_per_prompt"] = frame.groupby("prompt", dropna=True)["system"].transform("nunique").tolist()

    for name in list(frame.columns):
        if name in NESTED or (kind in CONVERSATION_KINDS and name in ("chosen", "rejected")):
            frame[name] = [_as_json(value) for value in frame[name]]
    for name, values in derived.items():
        frame[name] = pd.Series(values, index=frame.index, dtype="object")
    return frame.reset_index(drop=True)


def file_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of `frame` that came from the user's file (nothing build_frame added)."""
    return [name for name in frame.columns if name != ROW_REF and name not in DERIVED_FROM]
