"""The rows the evaluation stages hand each other, as pydantic models read and written through `records`.

    artifacts/eval/responses/<model>.jsonl   ResponseRow   written by generate, read by judge and report
    artifacts/eval/judgments/<model>.jsonl   Judgment      written by judge, read by report

Both are strict (`extra="forbid"`): a renamed key (`verdict` -> `score`) or a missing one fails
with the file and line named, instead of reading as an unscored verdict or an empty answer.
A responses file in the official inference layout (`{id: {"response": ..., ...}}` JSON, where
rows also carry the bench fields or a best-of-N `reward`) is read as `OfficialResponse`, which
keeps only what judging needs and still requires the `response` key (None there means the
request failed, as the official scripts record it).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class ResponseRow(BaseModel):
    """One candidate answer as the generate stage writes it; `error` is set when generation failed.

    Only `id` and `response` are required, so a hand-written `{id, response}` JSONL can be judged
    with `janus evaluate`; the rest is provenance the generate stage records.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    id: str
    response: str | None
    error: str | None = None
    source: str | None = None
    model: str | None = None
    model_id: str | None = None
    prompt_format: str | None = None
    seed: int | None = None
    completion_tokens: int | None = None
    best_of: int | None = None
    reward: float | None = None
    rewards: list[float | None] | None = None


class OfficialResponse(BaseModel):
    """A row of the official `{id: {"response": ...}}` responses JSON: other keys are the official
    scripts' own (bench fields, `reward`) and are ignored."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str
    response: str | None
    error: str | None = None


Verdict = Annotated[int, Field(ge=1, le=5)]


class Judgment(BaseModel):
    """One judge verdict: one item, one rubric, one repeat, with what it was read from.

    `verdict` is None when unscored (no verdict after the re-asks, a failed judge call, or no
    usable response); `error` then says why. `raw` is the judge's text as it answered,
    `prompt_hash` the identity of the exact judge input, `attempts` the calls it took (0: never asked).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    source: str
    model: str
    rubric_index: int
    dimension: str
    repeat: int
    verdict: Verdict | None
    feedback: str
    raw: str | None
    error: str | None
    call_failed: bool
    attempts: int
    seed: int
    judge_model: str
    prompt_hash: str
    template_version: str
    # The judge's model id as the API returned it for the verdict's answer (a dated snapshot
    # such as gpt-4o-2024-08-06); None where the judge runs locally or was never asked.
    judge_model_returned: str | None = None
