"""Stage `bench`: build the Multifaceted Bench (PAPER.md section 3).

1. Sample `bench.num_prompts` prompts from data/bench/prompts.jsonl, evenly over the five source
   groups (AlpacaEval, FLASK, Koala, MT-Bench, Self-Instruct), with the run seed.
2. Per prompt, one preference set (4 dimensions) and its system message, made by the SAME code as
   the training collection (`synth.preferences.generate_preference_sets`,
   `synth.system_messages.generate_system_messages`), under bench-specific seeds.
3. A reference answer: the teacher answers the prompt under the system message, as it writes the
   collection's gold responses (`synth.responses.response_job`, `bench.reference_sampling`).
4. Four rubrics, one per preference, from the three example rubrics (bench/rubrics.py).
   References and rubrics need only the system messages, so they are asked together: one engine
   call per attempt (`synth.teacher.ask_jobs`), with the same requests as if asked apart.
5. Drop any item whose system message appears in the training collection
   (artifacts/collection/sft), and count it: the bench's system messages are unseen.

Writes artifacts/bench/bench.jsonl in the official schema (+ `id`) and metrics/bench.json.
A prompt whose preference set, system message, reference or a rubric cannot be made is dropped
and counted; the stage fails (after writing) when more than `synth.max_reject_rate` are dropped.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from janus_align import paths, tracking
from janus_align.bench import rubrics as rubric_prompts
from janus_align.bench.schema import BenchItem, Rubric, write_bench
from janus_align.config import Params
from janus_align.config.schema import billed_prices
from janus_align.errors import JanusError
from janus_align.inputs import BENCH_GROUPS, load_taxonomy
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.records import iter_jsonl, write_json
from janus_align.seeding import derive_seed
from janus_align.synth.filters import dedup_key
from janus_align.synth.preferences import generate_preference_sets
from janus_align.synth.prompts import TEMPLATE_VERSION as SYNTH_TEMPLATE_VERSION
from janus_align.synth.responses import response_job
from janus_align.synth.rows import InstructionRow, SystemMessageRow
from janus_align.synth.system_messages import generate_system_messages
from janus_align.synth.teacher import Job, Outcome, ask_jobs, teacher_engine

# Stage names of the shared synthesis code: they key the seeds, so bench requests never
# coincide with the collection's.
PREFERENCES_STAGE = "bench_preferences"
SYSTEM_STAGE = "bench_system_messages"
REFERENCE_STAGE = "bench_references"
RUBRIC_STAGE = "bench_rubrics"


def _slug(group: str) -> str:
    return re.sub(r"[^a-z0-9]", "", group.lower())


def sample_prompts(rows: Sequence[dict[str, Any]], count: int, seed: int) -> list[InstructionRow]:
    """`count` prompts spread evenly over the source groups (the remainder to seeded groups).

    `rows` are the lines of prompts.jsonl in order; an item's id is `<group>-<line>`, stable
    whatever else is sampled. A group with too few prompts gives its share to the others.
    """
    if count > len(rows):
        raise JanusError(f"bench.num_prompts is {count} but {paths.BENCH_PROMPTS} has only {len(rows)} prompts")
    pools: dict[str, list[tuple[int, dict[str, Any]]]] = {group: [] for group in BENCH_GROUPS}
    for line, row in enumerate(rows, start=1):
        pools.setdefault(row["source"], []).append((line, row))
    groups = [g for g in pools if pools[g]]
    rng = random.Random(f"{seed}:bench:sample")
    quota = dict.fromkeys(groups, 0)
    order = groups[:]
    rng.shuffle(order)  # who gets the remainder
    left = count
    while left:
        open_groups = [g for g in order if quota[g] < len(pools[g])]
        for group in open_groups[:left]:
            quota[group] += 1
            left -= 1
    picked: list[InstructionRow] = []
    for group in groups:
        chosen = random.Random(f"{seed}:bench:{group}").sample(pools[group], quota[group])
        for line, row in sorted(chosen, key=lambda pair: pair[0]):
            picked.append(
                InstructionRow(
                    id=f"{_slug(group)}-{line:03d}", prompt=row["prompt"], main_source="bench", original_source=group
                )
            )
    return picked


def collection_system_messages() -> set[str] | None:
    """Normalized system messages of the training collection (SFT split), None when it is absent."""
    split = paths.split_dir("sft")
    files = sorted(split.glob("*.parquet")) if split.is_dir() else []
    if not files:
        return None
    import pyarrow.parquet as pq

    found: set[str] = set()
    for path in files:
        for value in pq.read_table(path, columns=["system"]).column("system").to_pylist():
            if value:
                found.add(dedup_key(value))
    return found


def rubric_job(
    rows: Sequence[SystemMessageRow], params: Params, examples: Sequence[Rubric]
) -> Job[tuple[SystemMessageRow, int], tuple[dict[str, list[Rubric]], list[Outcome]]]:
    """The requests for four rubrics per row (one per preference); it finishes as
    ({instruction_id: rubrics} for the rows with every rubric, outcomes)."""
    bench = params.bench
    schema = rubric_prompts.rubric_schema(bench.max_criteria_chars, bench.max_score_description_chars)
    units = [(row, index) for row in rows for index in range(len(row.preference_set))]

    def build(unit: tuple[SystemMessageRow, int], attempt: int) -> ChatRequest:
        row, index = unit
        return ChatRequest.of(
            rubric_prompts.rubric_prompt(examples, row.preference_set[index]),
            system=rubric_prompts.RUBRIC_SYSTEM,
            sampling=bench.rubric_sampling,
            seed=derive_seed(params.seed, RUBRIC_STAGE, f"{row.instruction_id}-{index}", attempt),
            response_schema=schema,
        )

    def accept(unit: tuple[SystemMessageRow, int], result: ChatResult) -> tuple[Any, str | None]:
        return rubric_prompts.parse_rubric(result.parsed)

    def finish(engine: LLMEngine, outcomes: list[Outcome]) -> tuple[dict[str, list[Rubric]], list[Outcome]]:
        per_row: dict[str, list[Rubric | None]] = {row.instruction_id: [None] * len(row.preference_set) for row in rows}
        for outcome in outcomes:
            row, index = outcome.unit
            if outcome.ok:
                per_row[row.instruction_id][index] = outcome.value
        complete = {key: [r for r in value if r is not None] for key, value in per_row.items() if all(value)}
        return complete, outcomes

    return Job(units, build, accept, RUBRIC_STAGE, finish)


def one_set_params(params: Params) -> Params:
    """Params whose synthesis asks for ONE preference set per prompt (the bench needs one).

    A copy, not a validated params file: `synth.sets_per_instruction` must stay >= 2 for the
    collection, and the shared code reads the count from there.
    """
    synth = params.synth.model_copy(update={"sets_per_instruction": 1})
    return params.model_copy(update={"synth": synth})


def reference_params(params: Params) -> Params:
    """Params whose gold-response sampling is the bench's reference sampling."""
    synth = params.synth.model_copy(update={"response_sampling": params.bench.reference_sampling})
    return params.model_copy(update={"synth": synth})


def build_bench(
    engine: LLMEngine, prompts: Sequence[InstructionRow], params: Params
) -> tuple[list[BenchItem], dict[str, Any]]:
    """Every item that could be made, and the counts of what could not (no file written)."""
    taxonomy = load_taxonomy()
    sets, set_rejects, set_outcomes = generate_preference_sets(
        engine, prompts, one_set_params(params), taxonomy, PREFERENCES_STAGE
    )
    systems, system_rejects, system_outcomes = generate_system_messages(engine, sets, params, SYSTEM_STAGE)
    # References and rubrics both need only the system-message rows: one engine call per attempt.
    (answered, reference_rejects, reference_outcomes), (rubrics, rubric_outcomes) = ask_jobs(
        engine,
        [
            response_job(systems, reference_params(params), REFERENCE_STAGE),
            rubric_job(systems, params, rubric_prompts.load_examples()),
        ],
        params.teacher.max_reasks,
    )
    references = {row.instruction_id: row.output for row in answered}
    items = []
    for row in systems:
        key = row.instruction_id
        if key not in references or key not in rubrics:
            continue
        items.append(
            BenchItem(
                id=key,
                source=row.original_source,
                preference_set=row.preference_set,
                system=row.system,
                prompt=row.prompt,
                reference_answer=references[key],
                rubrics=rubrics[key],
            )
        )
    outcomes = set_outcomes + system_outcomes + reference_outcomes + rubric_outcomes
    rubric_failures = {o.unit[0].instruction_id for o in rubric_outcomes if not o.ok}
    counts = {
        "rejected": {
            "preference_sets": len(set_rejects),
            "system_messages": len(system_rejects),
            "reference_answers": len(reference_rejects),
            "rubrics": sum(1 for o in rubric_outcomes if not o.ok),
            "items_missing_a_rubric": len(rubric_failures),
        },
        "prompt_tokens": sum(o.usage.prompt_tokens for o in outcomes),
        "completion_tokens": sum(o.usage.completion_tokens for o in outcomes),
        "truncated": sum(1 for o in outcomes if o.truncated),
        "reasked": sum(1 for o in outcomes if o.attempts > 1),
    }
    return items, counts


def unseen(items: Sequence[BenchItem], training: set[str] | None) -> tuple[list[BenchItem], int]:
    """Items whose system message is not in the training collection, and how many were."""
    if training is None:
        return list(items), 0
    kept = [item for item in items if dedup_key(item.system) not in training]
    return kept, len(items) - len(kept)


def run(params: Params) -> list[BenchItem]:
    import mlflow

    started = time.perf_counter()
    prompts = sample_prompts(list(iter_jsonl(paths.BENCH_PROMPTS)), params.bench.num_prompts, params.seed)
    with teacher_engine(params) as engine:
        built, counts = build_bench(engine, prompts, params)
        teacher, usage = engine.model_id, engine.usage.as_dict()
    training = collection_system_messages()
    items, overlapping = unseen(built, training)
    write_bench(paths.BENCH_FILE, items)
    dropped = len(prompts) - len(items)
    metrics = {
        "prompts_sampled": len(prompts),
        "items": len(items),
        "dropped": dropped,
        "per_group": dict(Counter(item.source for item in items)),
        **counts,
        "collection_checked": training is not None,
        "collection_system_messages": len(training or ()),
        "system_in_collection": overlapping,
        "teacher": teacher,
        "template_versions": {"synth": SYNTH_TEMPLATE_VERSION, "rubric": rubric_prompts.TEMPLATE_VERSION},
        "cost_usd": round(
            billed_prices(params.teacher).cost_usd(counts["prompt_tokens"], counts["completion_tokens"]), 6
        ),
        "wall_s": round(time.perf_counter() - started, 3),
        "engine": usage,
    }
    write_json(paths.BENCH_METRICS, metrics)
    checked = (
        f"{overlapping} system message(s) found in the training collection and dropped"
        if training is not None
        else "no training collection to check against"
    )
    print(f"bench: {len(items)} items from {len(prompts)} prompts -> {paths.BENCH_FILE} ({dropped} dropped; {checked})")
    mlflow.log_metrics(tracking.metrics(metrics))
    mlflow.set_tags({"teacher": teacher, "rubric_template": rubric_prompts.TEMPLATE_VERSION})
    mlflow.log_artifact(str(paths.BENCH_FILE))
    if prompts and dropped / len(prompts) > params.synth.max_reject_rate:
        raise JanusError(
            f"bench: {dropped} of {len(prompts)} prompts dropped ({dropped / len(prompts):.0%}), above "
            f"synth.max_reject_rate {params.synth.max_reject_rate:.0%}; see {paths.BENCH_METRICS}"
        )
    return items
