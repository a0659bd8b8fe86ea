"""`janus estimate`: requests, tokens and cost the current params would spend on every API
stage, printed before any call is made.

The stages that call a paid model: the synthesis (teacher), the bench (teacher: preference sets,
system messages, reference answers, 4 rubrics per prompt), the external candidates' answers to
the bench (generate.external_llm) and the judge (judge.llm: 4 rubrics x repeats per bench prompt
and candidate, pipeline and external candidates alike). Each stage is priced at the prices of the
model it calls (a local model costs nothing, but its requests are still counted).

Prompt tokens come from the real prompt templates filled with a typical instruction (the mean
prompt length of the local pool, or of a fixed sample text) and answers at their token budgets,
at about 4 characters per token; completion tokens are the sampling budget (max_new_tokens), so
the figure is an upper bound on what a run spends without re-asks.

Example (paper profile): 65,653 instructions -> about 460k synthesis requests; the judge asks
75 prompts x 4 rubrics x 3 repeats x 3 candidates = 2,700.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from janus_align import paths
from janus_align.bench import rubrics as rubric_prompts
from janus_align.bench.bench import one_set_params, reference_params
from janus_align.bench.schema import SCORE_KEYS, Rubric
from janus_align.config import Params, load_params
from janus_align.config.schema import FREE as FREE_PRICES
from janus_align.config.schema import Prices, billed_prices
from janus_align.errors import JanusError
from janus_align.evaluate.judge_prompt import JUDGE_SYSTEM, render_judge_prompt
from janus_align.inputs import DIMENSIONS, InputError, load_taxonomy
from janus_align.llm.types import CHARS_PER_TOKEN, estimated_tokens
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

_FALLBACK_INSTRUCTION = "Explain how vaccines train the immune system, and why booster doses are sometimes needed." * 2


@dataclass
class StageEstimate:
    """One stage's (or one candidate's) requests and tokens, priced as the model it calls."""

    stage: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str = ""

    def cost(self) -> float:
        return self.cost_usd


def priced(
    stage: str, requests: int, prompt_tokens: int, completion_tokens: int, prices: Prices, model: str
) -> StageEstimate:
    """A stage's estimate at the prices of the model it calls."""
    return StageEstimate(
        stage, requests, prompt_tokens, completion_tokens, prices.cost_usd(prompt_tokens, completion_tokens), model
    )


@dataclass
class PipelineEstimate:
    """Every API stage's estimate, grouped as the table prints them ("synthesis", "bench",
    "generate", "judge")."""

    groups: dict[str, list[StageEstimate]] = field(default_factory=dict)

    def stages(self) -> list[StageEstimate]:
        return [s for group in self.groups.values() for s in group]


def total(stages: list[StageEstimate], name: str = "total") -> StageEstimate:
    """The sum of `stages`; its cost is the sum of their costs (each at its own prices)."""
    return StageEstimate(
        name,
        sum(s.requests for s in stages),
        sum(s.prompt_tokens for s in stages),
        sum(s.completion_tokens for s in stages),
        sum(s.cost_usd for s in stages),
    )


tokens = estimated_tokens  # the engine's spending cap estimates a request the same way


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
    """The synthesis stages (preferences, system messages, gold responses) at the teacher's prices."""
    synth = params.synth
    prices, model = billed_prices(params.teacher), params.teacher.model
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
        priced(
            "preferences",
            preference_requests,
            preference_requests * tokens(PREFERENCE_SYSTEM + preference_prompt),
            preference_requests * synth.preference_sampling.max_new_tokens,
            prices,
            model,
        ),
        priced(
            "system_messages",
            sets,
            sets * tokens(SYSTEM_MESSAGE_SYSTEM + system_prompt),
            sets * system_tokens,
            prices,
            model,
        ),
        priced(
            "responses",
            sets,
            sets * (tokens(instruction) + system_tokens),
            sets * synth.response_sampling.max_new_tokens,
            prices,
            model,
        ),
    ]


def _rubric_examples() -> list[Rubric]:
    """The project's rubric examples, or the packaged defaults where there is no data/ yet."""
    from janus_align.setup_data import bundled_data_dir

    try:
        return rubric_prompts.load_examples()
    except JanusError:
        return rubric_prompts.load_examples(bundled_data_dir() / paths.RUBRIC_EXAMPLES.relative_to(paths.DATA))


def _budget_text(max_new_tokens: int) -> str:
    """A text as long as an answer at its whole token budget."""
    return "x" * int(max_new_tokens * CHARS_PER_TOKEN)


def bench_estimate(params: Params, instruction: str) -> list[StageEstimate]:
    """The bench stage: per prompt one preference set, its system message and a reference answer
    (the synthesis code on one set, `bench.reference_sampling`), and one rubric per dimension."""
    bench = params.bench
    per_prompt = one_set_params(reference_params(params))
    per_prompt = per_prompt.model_copy(
        update={"synth": per_prompt.synth.model_copy(update={"num_instructions": bench.num_prompts})}
    )
    stages = [
        StageEstimate(f"bench_{'references' if s.stage == 'responses' else s.stage}", *_counts(s), s.model)
        for s in estimate(per_prompt, instruction)
    ]
    preference = PreferenceEntry(
        dimension=DIMENSIONS[0],
        subdimension="s",
        preference="p" * params.synth.max_preference_chars,
        description="d" * params.synth.max_description_chars,
    )
    rubric_prompt = rubric_prompts.RUBRIC_SYSTEM + rubric_prompts.rubric_prompt(_rubric_examples(), preference)
    requests = bench.num_prompts * len(DIMENSIONS)
    stages.append(
        priced(
            "bench_rubrics",
            requests,
            requests * tokens(rubric_prompt),
            requests * bench.rubric_sampling.max_new_tokens,
            billed_prices(params.teacher),
            params.teacher.model,
        )
    )
    return stages


def _counts(stage: StageEstimate) -> tuple[int, int, int, float]:
    return stage.requests, stage.prompt_tokens, stage.completion_tokens, stage.cost_usd


def generate_estimate(params: Params, instruction: str) -> list[StageEstimate]:
    """The external candidates' answers to the bench (pipeline models run on our hardware)."""
    generate, prompts = params.generate, params.bench.num_prompts
    prompt = prompts * (tokens(instruction) + params.synth.system_message_sampling.max_new_tokens)
    return [
        priced(
            f"generate {name}",
            prompts,
            prompt,
            prompts * generate.sampling.max_new_tokens,
            generate.external_llm.prices,
            name,
        )
        for name in generate.external
    ]


def judge_estimate(params: Params, instruction: str) -> list[StageEstimate]:
    """The judge, per candidate: one request per rubric (4 per prompt), `judge.repeats` times."""
    judge, bench = params.judge, params.bench
    rubric = {
        "criteria": "c" * bench.max_criteria_chars,
        "score_descriptions": {key: "s" * bench.max_score_description_chars for key in SCORE_KEYS},
    }
    system = _budget_text(params.synth.system_message_sampling.max_new_tokens)
    shown = f"{system}\n{instruction}" if judge.show_system else instruction
    prompt = JUDGE_SYSTEM + render_judge_prompt(
        shown,
        _budget_text(params.generate.sampling.max_new_tokens),
        _budget_text(bench.reference_sampling.max_new_tokens),
        rubric,
        constrained=judge.constrained,
    )
    requests = bench.num_prompts * len(DIMENSIONS) * judge.repeats
    return [
        priced(
            f"judge {name}",
            requests,
            requests * tokens(prompt),
            requests * judge.llm.sampling.max_new_tokens,
            billed_prices(judge.llm),
            judge.llm.model,
        )
        for name in params.generate.candidates + params.generate.external
    ]


def estimate_pipeline(params: Params, instruction: str) -> PipelineEstimate:
    """Every API stage of the pipeline, in pipeline order."""
    return PipelineEstimate(
        {
            "synthesis": estimate(params, instruction),
            "bench": bench_estimate(params, instruction),
            "generate": generate_estimate(params, instruction),
            "judge": judge_estimate(params, instruction),
        }
    )


def _row(stage: StageEstimate) -> str:
    return (
        f"{stage.stage:<28}{stage.requests:>12,}{stage.prompt_tokens:>16,}{stage.completion_tokens:>16,}"
        f"{stage.cost():>12,.2f}"
    )


def _prices(prices: Prices) -> str:
    return f"${prices.input_per_mtok}/M in, ${prices.output_per_mtok}/M out"


HEADER = f"{'stage':<28}{'requests':>12}{'prompt tok':>16}{'completion tok':>16}{'cost USD':>12}"
GROUP_TITLES = {
    "synthesis": "synthesis (teacher {model})",
    "bench": "bench (teacher {model})",
    "generate": "generate: external candidates ({model})",
    "judge": "judge ({model})",
}


def report(params: Params, stages: list[StageEstimate] | PipelineEstimate, instruction_chars: int) -> str:
    """The table: one block per API stage with its subtotal, then the total over every stage."""
    groups = stages.groups if isinstance(stages, PipelineEstimate) else {"synthesis": stages}
    synth = params.synth
    lines = [
        f"API estimate (profile {params.profile}): {synth.num_instructions} instructions x "
        f"{synth.sets_per_instruction} sets, preference_mode {synth.preference_mode}; bench "
        f"{params.bench.num_prompts} prompts; judge {params.judge.repeats} repeat(s) x "
        f"{len(params.generate.candidates + params.generate.external)} candidates",
        f"(tokens: prompts at ~4 chars/token with {instruction_chars}-char instructions, the mean of "
        f"{paths.INSTRUCTIONS_DIR}/; completions at max_new_tokens, an upper bound; re-asks not included)",
    ]
    group_prices = {
        "synthesis": _prices(billed_prices(params.teacher)),
        "bench": _prices(billed_prices(params.teacher)),
        "generate": _prices(params.generate.external_llm.prices),
        "judge": _prices(billed_prices(params.judge.llm)),
    }
    every: list[StageEstimate] = []
    for name, group in groups.items():
        if not group:
            continue
        models = ", ".join(sorted({s.model for s in group}))
        lines += ["", GROUP_TITLES[name].format(model=models) + f"; prices: {group_prices[name]}", HEADER]
        lines += [_row(s) for s in group]
        lines.append(_row(total(group, f"{name} total")))
        every += group
    lines += ["", _row(total(every))]
    lines += ["", *spending_caps(params, groups)]
    return "\n".join(lines)


def spending_caps(params: Params, groups: dict[str, list[StageEstimate]]) -> list[str]:
    """Each paying section's estimate at sync and at batch prices, beside its `max_cost_usd`."""
    payers: list[tuple[str, Any, list[str]]] = [
        ("teacher", params.teacher, ["synthesis", "bench"]),
        ("generate.external_llm", params.generate.external_llm, ["generate"]),
        ("judge.llm", params.judge.llm, ["judge"]),
    ]
    lines = ["spending caps (max_cost_usd: a stage stops before the request that would cross it):"]
    for key, config, names in payers:
        stages = [s for name in names for s in groups.get(name, [])]
        if not stages or config.prices == FREE_PRICES:
            continue
        used = total(stages)
        sync = config.prices.cost_usd(used.prompt_tokens, used.completion_tokens)
        batch = config.prices.batch().cost_usd(used.prompt_tokens, used.completion_tokens)
        cap = getattr(config, "max_cost_usd", None)
        shown = "none (null)" if cap is None else f"${cap:,.2f}"
        over = "" if cap is None or cap >= min(sync, batch) else "  <- below the estimate"
        lines.append(
            f"  {key + '.max_cost_usd':<34}{shown:>14}   estimate ${sync:,.2f} at sync prices, "
            f"${batch:,.2f} at batch prices{over}"
        )
    if len(lines) == 1:
        lines.append("  (every model here is local: nothing to cap)")
    return lines


def main(args: argparse.Namespace) -> PipelineEstimate:
    params = load_params(args.params)
    instruction = typical_instruction()
    stages = estimate_pipeline(params, instruction)
    print(report(params, stages, len(instruction)))
    return stages
