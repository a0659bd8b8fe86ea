"""Stage `system_messages`: one system message per preference set (PAPER.md section 2).

The teacher turns the four preferences into one second-person paragraph that gives the
assistant a role suited to the instruction, weaves every preference in without listing them,
and does not restate the instruction. One paragraph is one line: the request carries
`PARAGRAPH_REGEX`, which backends that can constrain decoding (transformers, llama_cpp) enforce
token by token, so the teacher cannot break into a list of preferences (a list was the reason
for all 10 re-asks of 72 answers before). Whatever the backend,
an answer that is empty, longer than `synth.max_system_chars`, a list, or a copy of the
instruction is asked again with a new seed (up to `teacher.max_reasks`), then rejected.

Writes artifacts/synth/system_messages.jsonl (the preference-set row + `system`), the rejects
and artifacts/synth/stages/system_messages/stats.json. `generate_system_messages` is reusable (bench).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from janus_align import paths
from janus_align.config import Params
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.seeding import derive_seed
from janus_align.synth.filters import dedup_key
from janus_align.synth.prompts import (
    SYSTEM_MESSAGE_SYSTEM,
    clean_system_message,
    system_message_prompt,
)
from janus_align.synth.rows import PreferenceSetRow, RejectRow, SystemMessageRow
from janus_align.synth.teacher import Outcome, ask, extend_rows, run_row_stage

STAGE = "system_messages"
# One paragraph: no line break ("\r" excluded too, whatever the convention), and it ends on
# neither a colon nor a blank. Without a newline the 135M teacher cannot start a list, but it
# then ended 9 of 72 answers with a bare introduction ("Here's the response:") where the message
# would have followed on the next line; made to go on, it writes the message on the same line.
# The same text in xgrammar's regex and llama.cpp's GBNF syntax (llm/llama_server.py).
PARAGRAPH_REGEX = r"[^\n\r]*[^\n\r\t :]"
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)
# A list of three or more items is the enumeration the paper's prompt forbids.
_MAX_LIST_LINES = 2
# Shorter instructions ("Explain X.") may legitimately reappear inside a role description.
_MIN_RESTATED_CHARS = 40


def check_system_message(text: str, prompt: str, min_chars: int, max_chars: int) -> str | None:
    """Why `text` is not a usable system message for `prompt`, or None when it is."""
    if len(text) < min_chars:
        return f"empty (fewer than synth.min_text_chars={min_chars} characters)"
    if len(text) > max_chars:
        return f"overlong ({len(text)} characters > synth.max_system_chars={max_chars})"
    if len(_LIST_LINE.findall(text)) > _MAX_LIST_LINES:
        return "lists the preferences instead of weaving them into a paragraph"
    instruction = dedup_key(prompt.split("\n\n", 1)[0])
    if len(instruction) >= _MIN_RESTATED_CHARS and instruction in dedup_key(text):
        return "restates the instruction"
    return None


def generate_system_messages(
    engine: LLMEngine, rows: Sequence[PreferenceSetRow], params: Params, stage: str = STAGE
) -> tuple[list[SystemMessageRow], list[RejectRow], list[Outcome]]:
    """A system message for every preference-set row: (rows, rejects, outcomes)."""
    synth = params.synth

    def build(row: PreferenceSetRow, attempt: int) -> ChatRequest:
        return ChatRequest.of(
            system_message_prompt(row.prompt, row.preference_set),
            system=SYSTEM_MESSAGE_SYSTEM,
            sampling=synth.system_message_sampling,
            seed=derive_seed(params.seed, stage, row.id, attempt),
            response_regex=PARAGRAPH_REGEX,
        )

    def accept(row: PreferenceSetRow, result: ChatResult) -> tuple[Any, str | None]:
        text = clean_system_message(result.text)
        reason = check_system_message(text, row.prompt, synth.min_text_chars, synth.max_system_chars)
        return (None, reason) if reason else (text, None)

    outcomes = ask(engine, list(rows), build, accept, params.teacher.max_reasks, desc=stage)
    done, rejects = extend_rows(engine, outcomes, SystemMessageRow, stage, "system")
    return done, rejects, outcomes


def run(params: Params) -> list[SystemMessageRow]:
    return run_row_stage(
        STAGE, params, paths.PREFERENCE_SETS, PreferenceSetRow, generate_system_messages, paths.SYSTEM_MESSAGES
    )
