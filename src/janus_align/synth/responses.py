"""Stage `responses`: the gold response to every (system message, instruction) pair.

The system message is the system turn and the instruction the user turn, with no template
around them (PAPER.md section 2); the answer is stored as written. An empty answer, or one
longer than `synth.max_response_chars`, is asked again with a new seed, then rejected. An
answer cut at max_new_tokens is kept and counted (`truncated` in the stats): a budget choice
of the profile, not a malformed answer.

Writes artifacts/synth/responses.jsonl (the system-message row + `output`), the rejects and
artifacts/synth/stages/responses/stats.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from janus_align import paths
from janus_align.config import Params
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.seeding import derive_seed
from janus_align.synth.rows import RejectRow, ResponseRow, SystemMessageRow
from janus_align.synth.teacher import Job, Outcome, ask_jobs, extend_rows, run_row_stage

STAGE = "responses"


def check_response(text: str, min_chars: int, max_chars: int) -> str | None:
    if len(text) < min_chars:
        return f"empty (fewer than synth.min_text_chars={min_chars} characters)"
    if len(text) > max_chars:
        return f"overlong ({len(text)} characters > synth.max_response_chars={max_chars})"
    return None


def response_job(
    rows: Sequence[SystemMessageRow], params: Params, stage: str = STAGE
) -> Job[SystemMessageRow, tuple[list[ResponseRow], list[RejectRow], list[Outcome]]]:
    """The requests for the gold responses of `rows`, to ask alone or with another stage's job;
    it finishes as (rows, rejects, outcomes)."""
    synth = params.synth

    def build(row: SystemMessageRow, attempt: int) -> ChatRequest:
        return ChatRequest.of(
            row.prompt,
            system=row.system,
            sampling=synth.response_sampling,
            seed=derive_seed(params.seed, stage, row.id, attempt),
        )

    def accept(row: SystemMessageRow, result: ChatResult) -> tuple[Any, str | None]:
        text = result.text.strip()
        reason = check_response(text, synth.min_text_chars, synth.max_response_chars)
        return (None, reason) if reason else (text, None)

    def finish(engine: LLMEngine, outcomes: list[Outcome]) -> tuple[list[ResponseRow], list[RejectRow], list[Outcome]]:
        done, rejects = extend_rows(engine, outcomes, ResponseRow, stage, "output")
        return done, rejects, outcomes

    return Job(list(rows), build, accept, stage, finish)


def generate_responses(
    engine: LLMEngine, rows: Sequence[SystemMessageRow], params: Params, stage: str = STAGE
) -> tuple[list[ResponseRow], list[RejectRow], list[Outcome]]:
    [answered] = ask_jobs(engine, [response_job(rows, params, stage)], params.teacher.max_reasks)
    return answered


def run(params: Params) -> list[ResponseRow]:
    return run_row_stage(
        STAGE, params, paths.SYSTEM_MESSAGES, SystemMessageRow, generate_responses, paths.SYNTH_RESPONSES
    )
