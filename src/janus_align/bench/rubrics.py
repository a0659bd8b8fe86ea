"""The rubric-generation prompt of the bench: one rubric per preference, from three example rubrics.

Follows the paper's rubric generator (PAPER.md section 2): the teacher sees the three example
rubrics (data/bench/rubric_examples.json) and one preference of the item's preference set, and
writes a rubric in the same JSON format that checks whether a response is tailored to that
preference; JSON only. The wording here is ours. The answer is constrained by `rubric_schema`,
whose maxLength bounds make constrained decoding always close the JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.bench.schema import SCORE_KEYS, Rubric
from janus_align.errors import JanusError
from janus_align.synth.rows import PreferenceEntry

RUBRIC_SYSTEM = (
    "You are a careful and creative writer of evaluation rubrics. Given example rubrics and one user "
    "preference, you write a new rubric that checks how well a response is tailored to that preference. "
    "Follow the format of the examples exactly and answer with the JSON object only, with no text before "
    "or after it."
)

RUBRIC_USER = """# Example rubrics
{example_1}

{example_2}

{example_3}

# Preference
{preference}

# Generated rubric:"""

TEMPLATE_VERSION = "rubric-v1-" + hashlib.sha256(f"{RUBRIC_SYSTEM}\x00{RUBRIC_USER}".encode()).hexdigest()[:8]


def load_examples(path: Path = paths.RUBRIC_EXAMPLES) -> list[Rubric]:
    """The three example rubrics (inputs.check_rubric_examples has validated the file)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [Rubric.model_validate(rubric) for rubric in raw]
    except (OSError, ValueError) as exc:
        raise JanusError(f"{path}: unusable rubric examples ({exc})") from None


def describe_preference(preference: PreferenceEntry) -> str:
    """One preference as the generator reads it."""
    return (
        f"Dimension: {preference.dimension}\nSubdimension: {preference.subdimension}\n"
        f"Preference: {preference.preference}\nDescription: {preference.description}"
    )


def rubric_prompt(examples: Sequence[Rubric], preference: PreferenceEntry) -> str:
    shown = [json.dumps(example.as_official(), indent=4, ensure_ascii=False) for example in examples[:3]]
    return RUBRIC_USER.format(
        example_1=shown[0], example_2=shown[1], example_3=shown[2], preference=describe_preference(preference)
    )


def rubric_schema(max_criteria_chars: int, max_score_chars: int) -> dict[str, Any]:
    """{"criteria", "score_descriptions": {"1".."5"}}, every string bounded."""
    text = {"type": "string", "minLength": 1, "maxLength": max_score_chars}
    return {
        "type": "object",
        "properties": {
            "criteria": {"type": "string", "minLength": 1, "maxLength": max_criteria_chars},
            "score_descriptions": {
                "type": "object",
                "properties": {key: text for key in SCORE_KEYS},
                "required": list(SCORE_KEYS),
                "additionalProperties": False,
            },
        },
        "required": ["criteria", "score_descriptions"],
        "additionalProperties": False,
    }


def parse_rubric(value: Any) -> tuple[Rubric | None, str | None]:
    """A usable rubric from the teacher's parsed JSON, or the reason it is not."""
    if not isinstance(value, dict):
        return None, "not a JSON object"
    criteria = str(value.get("criteria", "")).strip()
    scores = value.get("score_descriptions") or {}
    descriptions = {key: str(scores.get(key, "")).strip() for key in SCORE_KEYS}
    blank = [name for name, text in [("criteria", criteria), *descriptions.items()] if not text or text == "..."]
    if blank:
        return None, f"blank rubric field(s): {', '.join(blank)}"
    return Rubric(criteria=criteria, score_descriptions=descriptions), None
