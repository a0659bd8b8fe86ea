"""The teacher prompts of the synthesis stages, their JSON schemas, and their version.

The paper's appendix prompts are not available (PAPER.md section 2); these follow its summary:
- preference sets: the instruction with seed examples (and, in `generated` mode, the four
  dimension definitions); the teacher answers JSON, one {subdimension, preference, description}
  per dimension. In `sampled` mode the subdimensions are drawn from the taxonomy and the teacher
  writes the rest; in `generated` mode it proposes all of it, for several sets at once, which
  must differ. Prompts are kept short: on a CPU the prompt's prefill is much of a request's cost;
  and they are ordered from the most shared to the least, because the transformers backend
  prefills a prefix that all prompts of a batch share only once, and then once the prefix that
  a group of rows shares (llm/prefill.py, `plan_prefill`). So the task statement and answer
  format come first (the same for every request), then the instruction (the same for the
  `sets_per_instruction` requests of one instruction in `sampled` mode: a group prefix), and
  the per-set subdimension lines last; in `generated` mode one request holds all sets of an
  instruction, so the instruction simply comes last;
- system message: one preference set (and the instruction, so the role fits the task, as in
  the released data) -> one second-person paragraph that weaves in all four preferences
  without listing them or restating the instruction;
- gold response: no template; the system message is the system turn, the instruction the user
  turn (so the response stage has nothing here).

Every string in a schema has a maxLength and every array a maxItems: constrained decoding
then always closes the JSON within max_new_tokens. `TEMPLATE_VERSION` ends in a fingerprint of
everything in this module that reaches the teacher, so an edited template can never pass for
the old one in the rows' provenance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from janus_align.inputs import DIMENSIONS

# What each dimension means (PAPER.md section 1.3), shown to the teacher.
DIMENSION_DEFINITIONS: dict[str, str] = {
    "style": "how the response is written and presented (clarity, conciseness, format, tone, vividness)",
    "background_knowledge": "how much the user already knows about the topic (novice to expert)",
    "informativeness": "what information the response gives and how much (depth, practicality, creativity, relevance)",
    "harmlessness": "how the response stays safe, accurate, ethical and sensitive to the user",
}
MAX_SUBDIMENSION_CHARS = 40
EXAMPLES_PER_SUBDIMENSION = 2

PREFERENCE_SYSTEM = (
    "You write user preferences for a dataset. A preference names a quality that one particular user "
    "wants in a response to an instruction. Answer with JSON only."
)

PREFERENCE_SAMPLED_USER = """For each dimension listed after the instruction below, write a preference a user could have for the response to the instruction, within the given subdimension, and a one-sentence description of it, specific to the instruction. Answer in JSON with keys style, background_knowledge, informativeness, harmlessness, each {{"preference": ..., "description": ...}}.

Instruction:
{instruction}

Dimensions:
{dimensions}"""

PREFERENCE_GENERATED_USER = """Propose {count} different preference sets for the response to the instruction at the end. A set has one entry for each of the four dimensions. Each entry has a subdimension (one or two lowercase words), a preference (a short phrase) and a one-sentence description. The sets must fit the instruction and differ from each other.

Answer in JSON: {{"preference_sets": [{{"style": {{"subdimension": "...", "preference": "...", "description": "..."}}, "background_knowledge": {{...}}, "informativeness": {{...}}, "harmlessness": {{...}}}}, ...]}}

Dimensions, with example subdimensions and preferences:
{dimensions}

Instruction:
{instruction}"""

SYSTEM_MESSAGE_SYSTEM = "You write system messages that tell an AI assistant who it is and how to answer."

SYSTEM_MESSAGE_USER = """Write the system message for the assistant that will answer the instruction below for the user with the preferences below: one paragraph in the second person ("You are ..."), giving it a role suited to the instruction and weaving in all four preferences without listing them. Do not restate or answer the instruction. Reply with the system message only.

Instruction:
{instruction}

User preferences:
{preferences}"""


def _fingerprint() -> str:
    parts = [
        PREFERENCE_SYSTEM,
        PREFERENCE_SAMPLED_USER,
        PREFERENCE_GENERATED_USER,
        SYSTEM_MESSAGE_SYSTEM,
        SYSTEM_MESSAGE_USER,
        json.dumps(DIMENSION_DEFINITIONS, sort_keys=True),
        str((MAX_SUBDIMENSION_CHARS, EXAMPLES_PER_SUBDIMENSION)),
    ]
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:8]


TEMPLATE_VERSION = f"synth-v2-{_fingerprint()}"


def _string(max_chars: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_chars}


def _entries(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An object with one entry per dimension (in the canonical order), each with `fields`."""
    entry = {"type": "object", "properties": fields, "required": list(fields), "additionalProperties": False}
    return {
        "type": "object",
        "properties": {dimension: entry for dimension in DIMENSIONS},
        "required": list(DIMENSIONS),
        "additionalProperties": False,
    }


def sampled_preference_schema(max_preference_chars: int, max_description_chars: int) -> dict[str, Any]:
    """{dimension: {preference, description}} for the four dimensions."""
    return _entries({"preference": _string(max_preference_chars), "description": _string(max_description_chars)})


def generated_preference_schema(count: int, max_preference_chars: int, max_description_chars: int) -> dict[str, Any]:
    """{"preference_sets": [count x {dimension: {subdimension, preference, description}}]}."""
    one_set = _entries(
        {
            "subdimension": _string(MAX_SUBDIMENSION_CHARS),
            "preference": _string(max_preference_chars),
            "description": _string(max_description_chars),
        }
    )
    return {
        "type": "object",
        "properties": {"preference_sets": {"type": "array", "items": one_set, "minItems": count, "maxItems": count}},
        "required": ["preference_sets"],
        "additionalProperties": False,
    }


def sampled_preference_prompt(instruction: str, draws: Sequence[tuple[str, str, Sequence[str]]]) -> str:
    """User turn for `sampled` mode; `draws` = (dimension, subdimension, example preferences)."""
    lines = []
    for dimension, subdimension, examples in draws:
        quoted = ", ".join(f'"{e}"' for e in examples[:EXAMPLES_PER_SUBDIMENSION])
        lines.append(f"- {dimension}, subdimension {subdimension} (e.g. {quoted})")
    return PREFERENCE_SAMPLED_USER.format(instruction=instruction, dimensions="\n".join(lines))


def generated_preference_prompt(instruction: str, taxonomy: dict[str, dict[str, list[str]]], count: int) -> str:
    """User turn for `generated` mode: the taxonomy's subdimensions serve as seed examples."""
    lines = []
    for dimension in DIMENSIONS:
        seeds = "; ".join(f'{name} ("{examples[0]}")' for name, examples in list(taxonomy[dimension].items())[:5])
        lines.append(f"- {dimension}: {DIMENSION_DEFINITIONS[dimension]}. e.g. {seeds}")
    return PREFERENCE_GENERATED_USER.format(instruction=instruction, count=count, dimensions="\n".join(lines))


def system_message_prompt(instruction: str, preference_set: Sequence[Any]) -> str:
    """User turn asking for the system message of one preference set (PreferenceEntry-like items)."""
    preferences = "\n".join(
        f"- {p.dimension} ({p.subdimension}): {p.preference}. {p.description}" for p in preference_set
    )
    return SYSTEM_MESSAGE_USER.format(instruction=instruction, preferences=preferences)


_QUOTE_PAIRS = {('"', '"'), ("'", "'"), ("“", "”")}
_LABEL = re.compile(r"^\s*(?:\*\*)?system message(?:\*\*)?\s*:\s*", re.IGNORECASE)


def clean_system_message(text: str) -> str:
    """The paragraph itself: without a leading "System message:" label or wrapping quotes."""
    text = _LABEL.sub("", text.strip()).strip()
    if len(text) >= 2 and (text[0], text[-1]) in _QUOTE_PAIRS:
        text = text[1:-1].strip()
    return text
