"""The Multifaceted Bench file format: one `BenchItem` per prompt, read from any official file.

Schema exactly as the released `kaist-ai/Multifaceted-Bench` (plus our `id`):
`source`, `preference_set` (4 x {dimension, subdimension, preference, description}), `system`,
`prompt`, `reference_answer`, `rubrics` (4 x {criteria, score_descriptions {"1".."5"}}).

The loader also takes what older or third-party copies of the bench look like, so the official
921-prompt file runs through the same evaluation as ours:
- the pre-June-2024 key `rubric` instead of `rubrics` (and a rubric stored as a JSON string);
- JSON (a list, or an {id: row} map), JSONL or parquet (`records.iter_records`);
- no `id` (the row's position becomes its id, as a string) and no `preference_set`.

    >>> items = load_bench("artifacts/bench/bench.jsonl")  # doctest: +SKIP
    >>> items[0].rubrics[0].score_descriptions["5"]         # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from janus_align.errors import JanusError
from janus_align.records import iter_located, write_jsonl
from janus_align.synth.rows import PreferenceEntry

# What the bench stage writes and generate/judge/report read.

SCORE_KEYS = ("1", "2", "3", "4", "5")
# Column order of the released dataset; `id` first because our files carry one.
OFFICIAL_KEYS = ("source", "preference_set", "system", "prompt", "reference_answer", "rubrics")


class BenchFileError(JanusError, ValueError):
    """A bench file is unreadable or a row breaks the schema; the message names file, row and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Rubric(_Strict):
    """What a judge scores against: a question plus what each score 1..5 means."""

    criteria: str = Field(min_length=1)
    score_descriptions: dict[str, str]

    @field_validator("score_descriptions")
    @classmethod
    def _five_scores(cls, value: dict[str, str]) -> dict[str, str]:
        if sorted(value) != list(SCORE_KEYS):
            raise ValueError(f"keys must be exactly '1'..'5', got {sorted(value)}")
        return {key: value[key] for key in SCORE_KEYS}

    def as_official(self) -> dict[str, Any]:
        return {"criteria": self.criteria, "score_descriptions": dict(self.score_descriptions)}


class BenchItem(_Strict):
    """One bench prompt with everything needed to answer it and to judge the answer."""

    id: str
    source: str
    preference_set: list[PreferenceEntry] = []
    system: str
    prompt: str = Field(min_length=1)
    reference_answer: str
    rubrics: list[Rubric] = Field(min_length=1)

    def dimension_of(self, rubric_index: int) -> str:
        """The dimension rubric `rubric_index` checks: rubric i was written for preference i, so
        it is the preference set's i-th dimension, whether or not every preference kept its rubric
        (`unknown` only past the preference set's end, or without one: the pre-June-2024 bench)."""
        if rubric_index < len(self.preference_set):
            return self.preference_set[rubric_index].dimension
        return "unknown"

    def official_row(self) -> dict[str, Any]:
        """The row as the released dataset spells it, with our `id` in front."""
        return {
            "id": self.id,
            "source": self.source,
            "preference_set": [p.model_dump() for p in self.preference_set],
            "system": self.system,
            "prompt": self.prompt,
            "reference_answer": self.reference_answer,
            "rubrics": [r.as_official() for r in self.rubrics],
        }


def _normalize(row: dict[str, Any], position: int) -> dict[str, Any]:
    """Map the variants of the official layout onto `BenchItem`'s fields."""
    row = dict(row)
    if "rubrics" not in row and "rubric" in row:
        row["rubrics"] = row.pop("rubric")
    rubrics = row.get("rubrics")
    if isinstance(rubrics, str):
        try:
            rubrics = json.loads(rubrics)
        except json.JSONDecodeError:
            raise ValueError("rubrics: a string that is not JSON") from None
    if isinstance(rubrics, dict):  # one rubric on its own
        rubrics = [rubrics]
    row["rubrics"] = rubrics
    if row.get("preference_set") is None:
        row["preference_set"] = []
    row["id"] = str(row["id"]) if row.get("id") is not None else str(position)
    return row


def bench_item(row: dict[str, Any], where: str, position: int = 0) -> BenchItem:
    """Validate one row; `where` (file:row) prefixes every error."""
    try:
        return BenchItem.model_validate(_normalize(row, position))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<row>'}: {err['msg']}" for err in exc.errors())
        raise BenchFileError(f"{where}: not a bench row ({problems})") from None
    except ValueError as exc:
        raise BenchFileError(f"{where}: not a bench row ({exc})") from None


def load_bench(path: str | Path) -> list[BenchItem]:
    """Every item of a bench file (JSON, JSONL or parquet), ids unique."""
    path = Path(path)
    items: list[BenchItem] = []
    seen: dict[str, str] = {}
    for position, (where, row) in enumerate(iter_located(path)):
        item = bench_item(row, where, position)
        if item.id in seen:
            raise BenchFileError(f"{where}: duplicate id {item.id!r} (first at {seen[item.id]})")
        seen[item.id] = where
        items.append(item)
    if not items:
        raise BenchFileError(f"{path}: the bench is empty")
    return items


def write_bench(path: str | Path, items: Iterable[BenchItem]) -> int:
    """Write items as JSONL in the official schema (plus `id`); returns the row count."""
    return write_jsonl(path, (item.official_row() for item in items))
