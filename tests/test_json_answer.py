"""parse_json_answer validates with a validator built once per schema: same verdicts and
messages as `jsonschema.validate`, which checked the schema on every answer (the hot spot of
the paper profile's preferences stage)."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from janus_align.llm.engine import parse_json_answer
from janus_align.synth.prompts import generated_preference_schema, sampled_preference_schema

DIMENSIONS = ("style", "background_knowledge", "informativeness", "harmlessness")


def one_set(text: str = "x") -> dict[str, dict[str, str]]:
    return {d: {"subdimension": "s", "preference": text, "description": "d"} for d in DIMENSIONS}


def answers() -> list[object]:
    valid = {"preference_sets": [one_set(), one_set(), one_set()]}
    missing = copy.deepcopy(valid)
    del missing["preference_sets"][1]["style"]["description"]
    extra = copy.deepcopy(valid)
    extra["preference_sets"][2]["harmlessness"]["note"] = "?"
    wrong_type = copy.deepcopy(valid)
    wrong_type["preference_sets"][0]["informativeness"]["preference"] = 3
    too_long = {"preference_sets": [one_set("y" * 500), one_set(), one_set()]}
    return [valid, missing, extra, wrong_type, too_long, {"preference_sets": [one_set()]}, {}, [], "text"]


def reference(value: object, schema: dict) -> str | None:
    """What the former code (jsonschema.validate on every call) said about `value`."""
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        return f"schema violation at {where}: {exc.message}"
    return None


@pytest.mark.parametrize(
    "schema",
    [generated_preference_schema(3, 200, 600), sampled_preference_schema(200, 600)],
    ids=["generated", "sampled"],
)
def test_verdicts_and_messages_are_those_of_jsonschema_validate(schema):
    for value in answers():
        expected = reference(value, schema)
        if expected is None:
            assert parse_json_answer(json.dumps(value), schema) == value
        else:
            with pytest.raises(ValueError) as caught:
                parse_json_answer(json.dumps(value), schema)
            assert str(caught.value) == expected


def test_an_invalid_schema_is_still_refused():
    with pytest.raises(jsonschema.SchemaError):
        parse_json_answer("{}", {"type": "no-such-type"})


def test_a_schema_changed_in_place_is_validated_as_it_is_now():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert parse_json_answer('{"a": 1}', {"type": "object"}) == {"a": 1}
    with pytest.raises(ValueError, match="schema violation at a"):
        parse_json_answer('{"a": 1}', schema)
    schema["properties"]["a"]["type"] = "integer"
    assert parse_json_answer('{"a": 1}', schema) == {"a": 1}
