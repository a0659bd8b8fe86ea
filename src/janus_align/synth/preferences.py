"""Stage `preferences`: `synth.sets_per_instruction` preference sets for every instruction.

A set holds exactly one {dimension, subdimension, preference, description} per dimension, in
the order style, background_knowledge, informativeness, harmlessness. Two modes:

- `sampled`: the subdimensions of each set are drawn from the taxonomy (data/taxonomy/) with a
  seed derived from the instruction id, distinct tuples for the sets of one instruction; the
  teacher writes the preference and its description for each (one request per set);
- `generated` (the paper): the teacher proposes subdimensions, preferences and descriptions for
  all sets in one answer; if two sets have the same subdimension in every dimension, it is asked
  again with a new seed.

Writes artifacts/synth/preference_sets.jsonl (one row per instruction and set index), the
rejects, and artifacts/synth/stages/preferences/stats.json. `generate_preference_sets` is the reusable
part (the bench builds its preference sets with it too).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from typing import Any

from janus_align import paths
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.inputs import DIMENSIONS, load_taxonomy
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.seeding import derive_seed
from janus_align.synth.prompts import (
    PREFERENCE_SYSTEM,
    TEMPLATE_VERSION,
    generated_preference_prompt,
    generated_preference_schema,
    sampled_preference_prompt,
    sampled_preference_schema,
)
from janus_align.synth.rows import InstructionRow, PreferenceEntry, PreferenceSetRow, RejectRow, Usage, read_rows
from janus_align.synth.teacher import Outcome, ask, finish_stage, provenance, reject_row, teacher_engine

STAGE = "preferences"
Taxonomy = dict[str, dict[str, list[str]]]
Draw = tuple[tuple[str, str, list[str]], ...]  # one set: (dimension, subdimension, examples) x 4
_SPACES = re.compile(r"\s+")


def draw_subdimensions(taxonomy: Taxonomy, count: int, rng: random.Random) -> list[Draw]:
    """`count` sets of one subdimension per dimension (with two example preferences each), all distinct."""
    combinations = 1
    for dimension in DIMENSIONS:
        combinations *= len(taxonomy[dimension])
    if combinations < count:
        raise JanusError(
            f"taxonomy: only {combinations} distinct subdimension combinations, fewer than "
            f"synth.sets_per_instruction {count}; add subdimensions to data/taxonomy/preferences.yaml"
        )
    draws: list[Draw] = []
    while len(draws) < count:
        draw = []
        for dimension in DIMENSIONS:
            subdimension = rng.choice(sorted(taxonomy[dimension]))
            examples = taxonomy[dimension][subdimension]
            draw.append((dimension, subdimension, rng.sample(examples, min(2, len(examples)))))
        if all(tuple(s for _, s, _ in draw) != tuple(s for _, s, _ in other) for other in draws):
            draws.append(tuple(draw))
    return draws


def _clean(text: Any) -> str:
    return _SPACES.sub(" ", text).strip() if isinstance(text, str) else ""


def _entries(
    answer: dict[str, Any], subdimensions: Sequence[str] | None
) -> tuple[list[PreferenceEntry] | None, str | None]:
    """The four entries of one answered set, or the reason it is unusable."""
    entries = []
    for k, dimension in enumerate(DIMENSIONS):
        item = answer.get(dimension) or {}
        subdimension = subdimensions[k] if subdimensions else _clean(item.get("subdimension")).lower()
        preference, description = _clean(item.get("preference")), _clean(item.get("description"))
        blank = [
            name
            for name, value in (
                ("subdimension", subdimension),
                ("preference", preference),
                ("description", description),
            )
            if not value or value == "..."
        ]
        if blank:
            return None, f"blank {', '.join(blank)} in {dimension}"
        entries.append(
            PreferenceEntry(
                dimension=dimension, subdimension=subdimension, preference=preference, description=description
            )
        )
    return entries, None


def _distinct(sets: list[list[PreferenceEntry]]) -> bool:
    keys = [tuple(e.subdimension for e in entries) for entries in sets]
    return len(set(keys)) == len(keys)


def generate_preference_sets(
    engine: LLMEngine,
    instructions: Sequence[InstructionRow],
    params: Params,
    taxonomy: Taxonomy,
    stage: str = STAGE,
) -> tuple[list[PreferenceSetRow], list[RejectRow], list[Outcome]]:
    """Preference sets for every instruction: (rows, rejects, one Outcome per request unit)."""
    synth = params.synth
    count = synth.sets_per_instruction
    max_reasks = params.teacher.max_reasks
    outcomes: list[Outcome[Any]]
    # (instruction, [(set index, the outcome that holds it)]): one request per set, or one for all.
    grouped: list[tuple[InstructionRow, list[tuple[int, Outcome[Any]]]]]
    generated = synth.preference_mode == "generated"
    if not generated:
        schema = sampled_preference_schema(synth.max_preference_chars, synth.max_description_chars)
        units = [
            (instruction, index, draw)
            for instruction in instructions
            for index, draw in enumerate(
                draw_subdimensions(taxonomy, count, random.Random(f"{params.seed}:{stage}:{instruction.id}"))
            )
        ]

        def build(unit: tuple[InstructionRow, int, Draw], attempt: int) -> ChatRequest:
            instruction, index, draw = unit
            return ChatRequest.of(
                sampled_preference_prompt(instruction.prompt, draw),
                system=PREFERENCE_SYSTEM,
                sampling=synth.preference_sampling,
                seed=derive_seed(params.seed, stage, f"{instruction.id}-{index}", attempt),
                response_schema=schema,
            )

        def accept(unit: tuple[InstructionRow, int, Draw], result: ChatResult) -> tuple[Any, str | None]:
            return _entries(result.parsed, [subdimension for _, subdimension, _ in unit[2]])

        outcomes = ask(engine, units, build, accept, max_reasks, desc=f"{stage} (sampled)")
        grouped = [(o.unit[0], [(o.unit[1], o)]) for o in outcomes]
    else:
        schema = generated_preference_schema(count, synth.max_preference_chars, synth.max_description_chars)

        def build_generated(instruction: InstructionRow, attempt: int) -> ChatRequest:
            return ChatRequest.of(
                generated_preference_prompt(instruction.prompt, taxonomy, count),
                system=PREFERENCE_SYSTEM,
                sampling=synth.preference_sampling,
                seed=derive_seed(params.seed, stage, instruction.id, attempt),
                response_schema=schema,
            )

        def accept_generated(instruction: InstructionRow, result: ChatResult) -> tuple[Any, str | None]:
            sets = []
            for answer in result.parsed["preference_sets"]:
                entries, reason = _entries(answer, None)
                if entries is None:
                    return None, reason
                sets.append(entries)
            if not _distinct(sets):
                return None, "duplicate preference sets (same subdimension in every dimension)"
            return sets, None

        units_generated: list[InstructionRow] = list(instructions)
        outcomes = ask(
            engine, units_generated, build_generated, accept_generated, max_reasks, desc=f"{stage} (generated)"
        )
        grouped = [(o.unit, [(index, o) for index in range(count)]) for o in outcomes]

    rows: list[PreferenceSetRow] = []
    rejects: list[RejectRow] = []
    for instruction, members in grouped:
        for index, outcome in members:
            if not outcome.ok:
                if index == members[0][0]:  # one reject per failed request
                    unit_id = instruction.id if generated else f"{instruction.id}-{index}"
                    rejects.append(reject_row(stage, unit_id, outcome))
                continue
            # A generated answer holds every set of its instruction (a list of sets even when
            # one set is asked for, as the bench does); a sampled answer is one set.
            entries = outcome.value[index] if generated else outcome.value
            # One request made every set of a generated instruction: split its usage between them.
            share = _share(outcome.usage, len(members), index - members[0][0])
            origin = provenance(engine, outcome).model_copy(update={"usage": share})
            rows.append(
                PreferenceSetRow(
                    id=f"{instruction.id}-{index}",
                    instruction_id=instruction.id,
                    set_index=index,
                    prompt=instruction.prompt,
                    main_source=instruction.main_source,
                    original_source=instruction.original_source,
                    preference_set=entries,
                    teacher=engine.model_id,
                    template_version=TEMPLATE_VERSION,
                    usage=share,
                    provenance={stage: origin},
                )
            )
    return rows, rejects, outcomes


def _share(usage: Usage, parts: int, index: int) -> Usage:
    """Part `index` of `usage` split into `parts` integer shares that add up exactly."""

    def part(total: int) -> int:
        base, extra = divmod(total, parts)
        return base + (1 if index < extra else 0)

    return Usage(prompt_tokens=part(usage.prompt_tokens), completion_tokens=part(usage.completion_tokens))


def run(params: Params) -> list[PreferenceSetRow]:
    started = time.perf_counter()
    instructions = read_rows(paths.INSTRUCTIONS, InstructionRow)
    taxonomy = load_taxonomy()
    with teacher_engine(params) as engine:
        rows, rejects, outcomes = generate_preference_sets(engine, instructions, params, taxonomy)
        finish_stage(STAGE, params, engine, outcomes, rows, rejects, started, paths.PREFERENCE_SETS)
    return rows
