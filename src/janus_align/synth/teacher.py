"""How a generating stage asks the teacher: deterministic requests, re-asks, rejects, stats.

Resuming after a kill relies on one property: the request for a given row and attempt is
always the same (same messages, sampling, seed and schema), so its answer comes from the
engine's request cache instead of being paid for again. `seeding.derive_seed(seed, stage,
row_id, attempt)` derives the seed from the row id, never from the row's position or from
earlier random draws.

This is the one re-ask loop: an unusable answer (malformed JSON, cut at max_new_tokens, or
rejected by the stage's checks: a blank field, an over-long message, duplicate preference sets)
is asked again here with the next seed, up to `teacher.max_reasks` times, so a unit costs at
most `teacher.max_reasks + 1` calls; a row that still fails becomes a reject with the raw
output and the reason. The stage fails only when the reject rate exceeds
`synth.max_reject_rate`, after writing its rows, rejects and stats.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from janus_align import paths
from janus_align.config import Params
from janus_align.config.schema import billed_prices
from janus_align.errors import JanusError
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.llm.engine import opened_engine
from janus_align.records import write_json, write_jsonl
from janus_align.synth.prompts import TEMPLATE_VERSION
from janus_align.synth.rows import Provenance, RejectRow, Row, Usage, dump, read_rows

UnitT = TypeVar("UnitT")
ResultT = TypeVar("ResultT")
# accept(unit, result) -> (value, None) when usable, (None, reason) when not.
Accept = Callable[[UnitT, ChatResult], tuple[Any, str | None]]
Build = Callable[[UnitT, int], ChatRequest]


@dataclass
class Outcome(Generic[UnitT]):
    """What asking for one unit gave: a value, or the reason and raw text of the last failure."""

    unit: UnitT
    value: Any = None
    reason: str | None = None
    raw: str = ""
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    truncated: bool = False
    asked: list[ChatRequest] = field(default_factory=list)  # every attempt's request

    @property
    def ok(self) -> bool:
        return self.reason is None


def _the_outcomes(engine: LLMEngine, outcomes: list[Outcome]) -> list[Outcome]:
    return outcomes


@dataclass
class Job(Generic[UnitT, ResultT]):
    """What one stage asks the teacher: its units, how to ask for one, when an answer is usable,
    and what the stage makes of the outcomes (`finish(engine, outcomes)`; the outcomes by default)."""

    units: Sequence[UnitT]
    build: Build
    accept: Accept
    desc: str
    finish: Callable[[LLMEngine, list[Outcome[UnitT]]], ResultT] = _the_outcomes  # type: ignore[assignment]


def ask_jobs(engine: LLMEngine, jobs: Sequence[Job[Any, Any]], max_reasks: int) -> list[Any]:
    """Ask for every unit of every job, re-asking unusable answers with a new seed; each job's
    `finish` result, in order.

    Each attempt sends the pending requests of all jobs in ONE `engine.complete` call (first
    attempts together, then the re-asks together), so independent jobs reach the backend
    together (an API backend's concurrency; the transformers backend's batches); every request
    is the same as if its job were asked alone.
    `build(unit, attempt)` must be deterministic (its seed from `seeding.derive_seed` with the
    attempt). Every answer that came back unusable is asked again: malformed JSON, an answer cut
    at max_new_tokens (a new seed usually ends where the cut one ran away) and one `accept`
    rejects. A call that brought no answer at all (an API error, after the client's own retries)
    is not: a re-run of the stage retries it, as failures are never cached.
    A unit that ends unusable has its answers taken out of the engine's look-ups (kept in the
    cache's `rejected` table), so a re-run asks for it afresh; a unit that ended usable keeps
    every answer it cost, so a resumed run replays it without paying again.
    """
    outcomes = [[Outcome(unit) for unit in job.units] for job in jobs]
    pending = [(j, i) for j, job in enumerate(jobs) for i in range(len(job.units))]
    for attempt in range(max_reasks + 1):
        if not pending:
            break
        desc = " + ".join(dict.fromkeys(jobs[j].desc for j, _ in pending))
        label = desc if attempt == 0 else f"{desc} (new seed, try {attempt + 1})"
        requests = [jobs[j].build(jobs[j].units[i], attempt) for j, i in pending]
        results = engine.complete(requests, desc=label)
        retry = []
        for (j, i), request, result in zip(pending, requests, results):
            outcome = outcomes[j][i]
            outcome.attempts += result.attempts
            outcome.asked.append(request)
            outcome.usage.prompt_tokens += result.prompt_tokens
            outcome.usage.completion_tokens += result.completion_tokens
            outcome.raw = result.text
            outcome.truncated = result.completion_tokens >= request.sampling.max_new_tokens
            if not result.ok:
                cut = f" (cut at max_new_tokens {request.sampling.max_new_tokens})" if outcome.truncated else ""
                outcome.value, outcome.reason = None, f"unusable answer{cut}: {result.error}"
                if result.text:  # an answer, unusable: a new seed usually gives a usable one
                    retry.append((j, i))
                continue
            outcome.value, outcome.reason = jobs[j].accept(jobs[j].units[i], result)
            if outcome.reason is not None:
                retry.append((j, i))
        pending = retry
    for outcome in (o for done in outcomes for o in done if not o.ok):
        engine.reject(outcome.asked, outcome.reason or "unusable")
    return [job.finish(engine, done) for job, done in zip(jobs, outcomes)]


def ask(
    engine: LLMEngine,
    units: Sequence[UnitT],
    build: Build,
    accept: Accept,
    max_reasks: int,
    desc: str,
) -> list[Outcome[UnitT]]:
    """`ask_jobs` for one job: one Outcome per unit."""
    [outcomes] = ask_jobs(engine, [Job(units, build, accept, desc)], max_reasks)
    return outcomes


def provenance(engine: LLMEngine, outcome: Outcome) -> Provenance:
    return Provenance(
        teacher=engine.model_id, template_version=TEMPLATE_VERSION, usage=outcome.usage, attempts=outcome.attempts
    )


RowT = TypeVar("RowT", bound=Row)


def extend_row(row: Row, model: type[RowT], engine: LLMEngine, outcome: Outcome, stage: str, **fields: Any) -> RowT:
    """`row` + this stage's `fields`, with teacher/template_version/usage now describing this
    stage's call and `provenance` keeping every stage's record."""
    origin = provenance(engine, outcome)
    kept = row.model_dump(exclude={"teacher", "template_version", "usage", "provenance"})
    return model.model_validate(
        {
            **kept,
            "teacher": origin.teacher,
            "template_version": origin.template_version,
            "usage": origin.usage,
            "provenance": {**getattr(row, "provenance", {}), stage: origin},
            **fields,
        }
    )


def teacher_engine(params: Params) -> contextlib.AbstractContextManager[LLMEngine]:
    """The teacher's engine (request cache included), closed when the stage is done."""
    return opened_engine(params.teacher, f"teacher ({params.teacher.backend}:{params.teacher.model})", payer="teacher")


def reject_row(stage: str, row_id: str, outcome: Outcome) -> RejectRow:
    return RejectRow(stage=stage, id=row_id, reason=outcome.reason or "unknown", raw=outcome.raw)


def extend_rows(
    engine: LLMEngine, outcomes: Sequence[Outcome], model: type[RowT], stage: str, field: str
) -> tuple[list[RowT], list[RejectRow]]:
    """Each accepted outcome's row extended with `field` = its answer; each failed one as a reject."""
    done: list[RowT] = []
    rejects: list[RejectRow] = []
    for outcome in outcomes:
        if outcome.ok:
            done.append(extend_row(outcome.unit, model, engine, outcome, stage, **{field: outcome.value}))
        else:
            rejects.append(reject_row(stage, outcome.unit.id, outcome))
    return done, rejects


def run_row_stage(
    stage: str,
    params: Params,
    source: Path,
    source_model: type[Row],
    generate: Callable[[LLMEngine, list[Any], Params], tuple[list[RowT], list[RejectRow], list[Outcome]]],
    out: Path,
) -> list[RowT]:
    """A teacher stage that turns each row of `source` into one row of `out` (system messages, responses)."""
    started = time.perf_counter()
    rows = read_rows(source, source_model)
    with teacher_engine(params) as engine:
        done, rejects, outcomes = generate(engine, rows, params)
        finish_stage(stage, params, engine, outcomes, done, rejects, started, out)
    return done


def finish_stage(
    stage: str,
    params: Params,
    engine: LLMEngine,
    outcomes: Sequence[Outcome],
    rows: Sequence[Row],
    rejects: Sequence[RejectRow],
    started: float,
    output_path: Any,
) -> dict[str, Any]:
    """Write rows, rejects and stats; log the stats to the active MLflow run; enforce the reject rate.

    The reject rate counts units (what one request asks for), so in `generated` mode an
    instruction whose three sets failed together counts once.
    """
    write_jsonl(output_path, dump(list(rows)))
    write_jsonl(paths.rejects(stage), dump(list(rejects)))
    units = len(outcomes)
    failed = sum(1 for o in outcomes if not o.ok)
    prompt_tokens = sum(o.usage.prompt_tokens for o in outcomes)
    completion_tokens = sum(o.usage.completion_tokens for o in outcomes)
    stats: dict[str, Any] = {
        "stage": stage,
        "teacher": engine.model_id,
        "template_version": TEMPLATE_VERSION,
        "units": units,
        "rows_out": len(rows),
        "rejected": failed,
        "reject_rate": round(failed / units, 4) if units else 0.0,
        "truncated": sum(1 for o in outcomes if o.truncated),
        "reasked": sum(1 for o in outcomes if o.attempts > 1),
        # What producing these rows took, re-asks and rejects included, however many runs it took.
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": round(billed_prices(params.teacher).cost_usd(prompt_tokens, completion_tokens), 6),
        "wall_s": round(time.perf_counter() - started, 3),
        # What this run itself asked the engine (cached answers cost nothing again).
        "engine": engine.usage.as_dict(),
    }
    write_json(paths.stats(stage), stats)
    _log_stats(stats)
    print(
        f"{stage}: {len(rows)} rows, {failed}/{units} rejected, {stats['engine']['cached']} cached of "
        f"{stats['engine']['requests']} requests, {stats['wall_s']:.1f} s"
    )
    if units and failed / units > params.synth.max_reject_rate:
        reasons = "; ".join(sorted({r.reason for r in rejects})[:3])
        raise JanusError(
            f"{stage}: {failed} of {units} rejected ({failed / units:.0%}), above synth.max_reject_rate "
            f"{params.synth.max_reject_rate:.0%}; see {paths.rejects(stage)} (reasons: {reasons}); a re-run asks "
            f"the teacher afresh for these {failed} (their answers are set aside in the request cache's `rejected` "
            f"table) and takes the accepted ones from the cache"
        )
    return stats


def _log_stats(stats: dict[str, Any]) -> None:
    import mlflow

    if mlflow.active_run() is None:
        return
    flat = {k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.update({f"engine_{k}": v for k, v in stats["engine"].items()})
    mlflow.log_metrics({k: float(v) for k, v in flat.items()})
    mlflow.set_tags({"teacher": stats["teacher"], "template_version": stats["template_version"]})
