"""The Great Expectations suite of each kind of file (the five splits and the bench).

Every expectation carries `meta["check"]`, the rule of issue 3 it enforces in plain words, and a
GX severity: `critical` ones stop the validate stage, `warning` ones are reported only.
Cross-split row counts use suite parameters (`{"$PARAMETER": name}`, values given at run time by
`cross_split_parameters`), so the suites saved under gx/ do not change with the data.
"""

from __future__ import annotations

from typing import Any

import great_expectations.expectations as gxe
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.metadata_types import FailureSeverity

from janus_align.config.schema import SynthConfig
from janus_align.inputs import BENCH_GROUPS
from janus_align.validate.frames import (
    CANONICAL_DIMENSIONS,
    CANONICAL_RUBRIC_KEYS,
    COLUMNS,
    CONVERSATION_KINDS,
    KINDS,
)

# Whitespace-only (or empty) strings; nulls are skipped by GX column-map expectations.
BLANK = r"^\s*$"
# A conversation ends with the assistant turn the pair is about; an optional system turn first.
ROLES = r"^(?:system,)?(?:user,assistant,)*user,assistant$"


def _meta(check: str) -> dict[str, Any]:
    return {"check": check}


def _text_column(column: str, min_chars: int, max_chars: int | None) -> list[Expectation]:
    """Not null, not blank, length within the params bounds."""
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column, meta=_meta("no nulls")),
        gxe.ExpectColumnValuesToNotMatchRegex(column=column, regex=BLANK, meta=_meta("no empty strings")),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column=column, min_value=min_chars, max_value=max_chars, meta=_meta("lengths within params bounds")
        ),
    ]


def _max_chars(column: str, synth: SynthConfig) -> int | None:
    """Upper length bound of a text column: system messages and responses have one in params."""
    if column == "system":
        return synth.max_system_chars
    if column in ("output", "chosen", "rejected", "chosen_response", "rejected_response", "reference_answer"):
        return synth.max_response_chars
    return None  # prompts, sources and RM inputs: only the lower bound


def _preference_set(synth: SynthConfig) -> list[Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="preference_set", meta=_meta("no nulls")),
        gxe.ExpectColumnValuesToBeInSet(
            column="preference_dimensions",
            value_set=[CANONICAL_DIMENSIONS],
            meta=_meta("4 entries per preference set with the 4 dimensions exactly once"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="preference_shortest_text",
            min_value=synth.min_text_chars,
            meta=_meta("no empty strings inside the preference set"),
        ),
    ]


def _row_count(kind: str, cross_split: bool) -> list[Expectation]:
    if not cross_split or kind == "bench":
        return [gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_meta("the file has rows"))]
    if kind == "sft_small":
        return [gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_meta("the split has rows"))]
    if kind == "sft":
        return [
            gxe.ExpectTableRowCountToEqual(
                value={"$PARAMETER": "sft_rows"},
                meta=_meta("row counts consistent: sft = sets_per_instruction x sft_small"),
            )
        ]
    if kind in CONVERSATION_KINDS:
        return [
            gxe.ExpectTableRowCountToBeBetween(
                min_value=1,
                max_value={"$PARAMETER": "sft_small_rows"},
                meta=_meta("row counts consistent: at most one pair per instruction of sft_small"),
            ),
            gxe.ExpectTableRowCountToEqual(
                value={"$PARAMETER": "sft_small_rows"},
                severity=FailureSeverity.WARNING,
                meta=_meta("every instruction of sft_small has a pair (fewer when some had no rejected response)"),
            ),
        ]
    # rm: train + test together hold one row per DPO pair
    return [
        gxe.ExpectTableRowCountToEqual(
            value={"$PARAMETER": "dpo_rows"}, meta=_meta("row counts consistent: rm train + test = dpo")
        )
    ]


def build_expectations(kind: str, synth: SynthConfig, cross_split: bool = False) -> list[Expectation]:
    """The expectations for one kind of file.

    `cross_split` adds the row-count checks against the other splits (the validate stage);
    `janus validate-data` on a single file leaves them out.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    columns = COLUMNS[kind]
    expectations: list[Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(columns), exact_match=False, meta=_meta("the official columns are present")
        ),
        *_row_count(kind, cross_split),
    ]
    text_columns = [c for c in columns if c not in ("preference_set", "rubrics")]
    if kind in CONVERSATION_KINDS:
        text_columns = [c for c in text_columns if c not in ("chosen", "rejected")]
        for side in ("chosen", "rejected"):
            expectations += [
                gxe.ExpectColumnValuesToNotBeNull(column=side, meta=_meta("no nulls")),
                gxe.ExpectColumnValuesToMatchRegex(
                    column=f"{side}_roles", regex=ROLES, meta=_meta("a conversation ending in the assistant response")
                ),
            ]
            text_columns.append(f"{side}_response")
    for column in text_columns:
        expectations += _text_column(column, synth.min_text_chars, _max_chars(column, synth))
    if "preference_set" in columns:
        expectations += _preference_set(synth)

    if kind == "rm":
        # the input is system message + prompt, so a unique input is a unique (prompt, system)
        expectations.append(gxe.ExpectColumnValuesToBeUnique(column="input", meta=_meta("(prompt, system) unique")))
    else:
        expectations.append(
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["prompt", "system"], meta=_meta("(prompt, system) unique"))
        )
    if kind == "sft":
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="systems_per_prompt",
                min_value=synth.sets_per_instruction,
                max_value=synth.sets_per_instruction,
                meta=_meta(f"{synth.sets_per_instruction} distinct system messages per instruction"),
            )
        )
    if kind in (*CONVERSATION_KINDS, "rm"):
        # GX has no "column pair values differ" expectation; a derived boolean (whitespace-
        # normalized chosen != rejected) expected to be True is the honest equivalent.
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column="pair_differs", value_set=[True], meta=_meta("chosen != rejected"))
        )
    if kind == "rm":
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="input_has_bench_prompt", value_set=[False], meta=_meta("no bench prompt in any split")
            )
        )
    elif kind != "bench":
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="prompt_has_bench_prompt", value_set=[False], meta=_meta("no bench prompt in any split")
            )
        )
    if kind == "bench":
        expectations += [
            gxe.ExpectColumnValuesToNotBeNull(column="rubrics", meta=_meta("no nulls")),
            gxe.ExpectColumnValuesToBeInSet(
                column="rubric_score_keys",
                value_set=[CANONICAL_RUBRIC_KEYS],
                meta=_meta("4 rubrics per item, each scoring 1..5"),
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="rubric_shortest_text", min_value=synth.min_text_chars, meta=_meta("no empty rubric texts")
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="source",
                value_set=list(BENCH_GROUPS),
                severity=FailureSeverity.WARNING,  # the official bench may spell its sources differently
                meta=_meta("source is one of the five bench groups"),
            ),
        ]
    return expectations


def cross_split_parameters(row_counts: dict[str, int], sets_per_instruction: int) -> dict[str, int]:
    """Values of the row-count suite parameters, computed from the other splits' row counts."""
    return {
        "sft_rows": sets_per_instruction * row_counts["sft_small"],
        "sft_small_rows": row_counts["sft_small"],
        "dpo_rows": row_counts["dpo"],
    }
