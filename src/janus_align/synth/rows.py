"""The rows the synthesis stages hand each other (artifacts/synth/*.jsonl), as pydantic models.

Each stage reads the previous stage's file through `records.read_rows`, so a hand-edited or truncated
file fails with the file and line named, and adds its own fields:

    instructions.jsonl      InstructionRow     {id, prompt, main_source, original_source}
    preference_sets.jsonl   PreferenceSetRow   + instruction_id, set_index, preference_set,
                                                 teacher, template_version, usage, provenance
    system_messages.jsonl   SystemMessageRow   + system
    responses.jsonl         ResponseRow        + output

`teacher`, `template_version` and `usage` describe the call that made the stage's own field
(in responses.jsonl: the response); `provenance` keeps that record for every stage so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from janus_align.records import read_rows as read_rows  # the stages read their rows through records


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Usage(Row):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Provenance(Row):
    """Who wrote a field, with which prompt template, for how many tokens, in how many tries."""

    teacher: str
    template_version: str
    usage: Usage
    attempts: int = 1


class PreferenceEntry(Row):
    """One entry of a preference set: one preference along one dimension.

    The one preference record: synthesis writes it, the bench file (`bench.schema.BenchItem`)
    holds it in the released dataset's layout, rubric prompts read it.
    """

    dimension: str
    subdimension: str
    preference: str
    description: str


class InstructionRow(Row):
    id: str
    prompt: str
    main_source: str
    original_source: str


class PreferenceSetRow(InstructionRow):
    instruction_id: str
    set_index: int
    preference_set: list[PreferenceEntry]
    teacher: str
    template_version: str
    usage: Usage
    provenance: dict[str, Provenance] = {}


class SystemMessageRow(PreferenceSetRow):
    system: str


class ResponseRow(SystemMessageRow):
    output: str


class RejectRow(Row):
    """A row a stage could not produce: written to artifacts/synth/stages/<stage>/rejects.jsonl."""

    stage: str
    id: str
    reason: str
    raw: str


def dump(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [row.model_dump(mode="json") for row in rows]
