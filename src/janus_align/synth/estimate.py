"""`janus estimate`: requests, tokens and cost the current params would spend on synthesis,
printed before any call is made.

Prompt tokens come from the real prompt templates filled with a typical instruction (the mean
prompt length of the local pool, or of a fixed sample text) at about 4 characters per token;
completion tokens are the sampling budget (max_new_tokens), so the figure is an upper bound
on what a run spends without re-asks. Prices are the teacher's `prices` in params.

Example (paper profile): 65,653 instructions -> about 460k requests.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from janus_align import paths
from janus_align.config import Params, load_params
from janus_align.inputs import DIMENSIONS, InputError, load_taxonomy
from janus_align.records import RecordError
from janus_align.synth.filters import join_prompt
from janus_align.synth.prompts import (
    PREFERENCE_SYSTEM,
    SYSTEM_MESSAGE_SYSTEM,
    generated_preference_prompt,
    sampled_preference_prompt,
    system_message_prompt,
)
from janus_align.synth.rows import PreferenceEntry

CHARS_PER_TOKEN = 4.0
# Chat-template wrapping (role markers) around every request, in tokens.
TEMPLATE_OVERHEAD_TOKENS = 12
_FALLBACK_INSTRUCTION = "Explain how vaccines train the immune system, and why booster doses are sometimes needed." * 2


@dataclass
class StageEstimate:
    stage: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    def cost(self, params: Params) -> float:
        return params.teacher.prices.cost_usd(self.prompt_tokens, self.completion_tokens)


def tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + TEMPLATE_OVERHEAD_TOKENS


def typical_instruction() -> str:
    """A pool instruction of the pool's mean prompt length (a fixed text when there is no pool)."""
    from janus_align.inputs import instruction_files
    from janus_align.records import iter_jsonl

    try:
        prompts = [
            join_prompt(row.get("instruction") or "", row.get("input") or "")
            for path in instruction_files()
            for row in iter_jsonl(path)
        ]
    except (InputError, RecordError):
        prompts = []
    if not prompts:
        return _FALLBACK_INSTRUCTION
    mean = sum(len(p) for p in prompts) / len(prompts)
    return "x" * int(mean)


def estimate(params: Params, instruction: str) -> list[StageEstimate]:
    synth = params.synth
    n = synth.num_instructions
    sets = n * synth.sets_per_instruction
    try:
        taxonomy = load_taxonomy()
    except InputError:
        taxonomy = {d: {"example": ["an example preference"]} for d in DIMENSIONS}
    # A preference set at its schema's size limits stands in for a written one.
    entries = [
        PreferenceEntry(
            dimension=d,
            subdimension=next(iter(taxonomy[d])),
            preference="p" * synth.max_preference_chars,
            description="d" * synth.max_description_chars,
        )
        for d in DIMENSIONS
    ]
    if synth.preference_mode == "sampled":
        draw = [(d, next(iter(taxonomy[d])), next(iter(taxonomy[d].values()))) for d in DIMENSIONS]
        preference_prompt = sampled_preference_prompt(instruction, draw)
        preference_requests = sets
    else:
        preference_prompt = generated_preference_prompt(instruction, taxonomy, synth.sets_per_instruction)
        preference_requests = n
    system_prompt = system_message_prompt(instruction, entries)
    system_tokens = synth.system_message_sampling.max_new_tokens
    return [
        StageEstimate(
            "preferences",
            preference_requests,
            preference_requests * tokens(PREFERENCE_SYSTEM + preference_prompt),
            preference_requests * synth.preference_sampling.max_new_tokens,
        ),
        StageEstimate(
            "system_messages", sets, sets * tokens(SYSTEM_MESSAGE_SYSTEM + system_prompt), sets * system_tokens
        ),
        StageEstimate(
            "responses",
            sets,
            sets * (tokens(instruction) + system_tokens),
            sets * synth.response_sampling.max_new_tokens,
        ),
    ]


def report(params: Params, stages: list[StageEstimate], instruction_chars: int) -> str:
    teacher = params.teacher
    prices = teacher.prices
    lines = [
        f"synthesis estimate (profile {params.profile}): {params.synth.num_instructions} instructions x "
        f"{params.synth.sets_per_instruction} sets, preference_mode {params.synth.preference_mode}",
        f"teacher {teacher.backend}:{teacher.model}, prices ${prices.input_per_mtok}/M in, ${prices.output_per_mtok}/M out",
        f"(tokens: prompts at ~4 chars/token with {instruction_chars}-char instructions, the mean of "
        f"{paths.INSTRUCTIONS_DIR}/; completions at max_new_tokens, an upper bound; re-asks not included)",
        f"{'stage':<16}{'requests':>12}{'prompt tok':>16}{'completion tok':>16}{'cost USD':>12}",
    ]
    for s in stages:
        lines.append(
            f"{s.stage:<16}{s.requests:>12,}{s.prompt_tokens:>16,}{s.completion_tokens:>16,}{s.cost(params):>12,.2f}"
        )
    total = StageEstimate(
        "total",
        sum(s.requests for s in stages),
        sum(s.prompt_tokens for s in stages),
        sum(s.completion_tokens for s in stages),
    )
    lines.append(
        f"{total.stage:<16}{total.requests:>12,}{total.prompt_tokens:>16,}{total.completion_tokens:>16,}{total.cost(params):>12,.2f}"
    )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> list[StageEstimate]:
    params = load_params(args.params)
    instruction = typical_instruction()
    stages = estimate(params, instruction)
    print(report(params, stages, len(instruction)))
    return stages
