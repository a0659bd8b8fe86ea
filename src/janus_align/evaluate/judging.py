"""The judging loop: every (candidate, item, rubric, repeat) asked, re-asked, and recorded as a `Judgment`.

`judge_candidates` is the one entry point (the judge stage, `janus evaluate` and the tune
stage's bench objective all call it, with an engine from `open_judge`). Every rubric of every
item is judged `judge.repeats` times with different seeds. A verdict that cannot be read is
re-asked with a new seed up to `judge.max_reasks` times, then recorded unscored with its raw
text; a failed judge call (HTTP error, crashed backend) is recorded the same way. The answers of
an unscored verdict are set aside in the request cache (`LLMEngine.reject`), so a re-run of the
judge asks for it again rather than reading the same unusable answer. Nothing
unscored ever counts as 0: scoring leaves it out and counts it. `attempts` is every request a
verdict cost (the engine itself never re-asks).

With `judge.constrained`, a server that answers a structured request with something that is not
JSON at all has ignored `response_format` (`ignored_schema`): the verdict is still read from its
text, and the re-asks of that run use the free-text protocol (`[RESULT] n`) instead of asking
again for structure it will not give.

Each attempt (the first ask, then each verdict re-ask) is ONE engine call over the pending
requests of every candidate, so the engine batches them together and prefills shared prompt
prefixes once. A request's seed names the item, rubric, repeat and attempt, not the candidate,
so a candidate's requests are exactly those it gets judged alone; identical requests (two
candidates that gave the same answer) are sent once and share the answer, as the request cache
would give it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from janus_align.bench.schema import BenchItem
from janus_align.config.schema import JudgeConfig
from janus_align.evaluate.judge_prompt import TEMPLATE_VERSION, judge_request, prompt_hash
from janus_align.evaluate.responses import Response
from janus_align.evaluate.rows import Judgment
from janus_align.evaluate.verdicts import feedback_of, parse_verdict, verdict_text
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.llm.engine import SpendingCapReached
from janus_align.seeding import derive_seed


@contextlib.contextmanager
def open_judge(config: JudgeConfig) -> Iterator[LLMEngine]:
    """The judge's engine, closed on exit; a missing checkpoint or API key is a JanusError naming the setting.

    >>> with open_judge(params.judge) as engine:  # doctest: +SKIP
    ...     judgments = judge_candidates(engine, items, {"sft": responses}, params.judge, params.seed)
    """
    from janus_align.llm.engine import opened_engine

    label = f"judge.llm ({config.llm.backend}:{config.llm.model})"
    with opened_engine(config.llm, label, payer="judge.llm") as engine:
        yield engine


@dataclass
class _Task:
    """One (candidate, item, rubric, repeat) while it is being judged."""

    model: str
    item: BenchItem
    rubric_index: int
    repeat: int
    response: Response | None
    attempts: int = 0
    verdict: int | None = None
    raw: str | None = None
    read: str | None = None  # the text the verdict was read from (see `verdict_text`)
    error: str | None = None
    call_failed: bool = False
    seed: int = 0
    hash: str = ""
    asked: list[ChatRequest] = field(default_factory=list)  # every attempt's request
    returned_model: str | None = None  # the model id the API returned with the answer kept

    def judgment(self, judge_model: str) -> Judgment:
        return Judgment(
            id=self.item.id,
            source=self.item.source,
            model=self.model,
            rubric_index=self.rubric_index,
            dimension=self.item.dimension_of(self.rubric_index),
            repeat=self.repeat,
            verdict=self.verdict,
            feedback=feedback_of(self.read),
            raw=self.raw,
            error=self.error,
            call_failed=self.call_failed,
            attempts=self.attempts,
            seed=self.seed,
            judge_model=judge_model,
            judge_model_returned=self.returned_model,
            prompt_hash=self.hash,
            template_version=TEMPLATE_VERSION,
        )


def judge_candidates(
    engine: LLMEngine,
    items: Sequence[BenchItem],
    candidates: Mapping[str, Mapping[str, Response]],
    config: JudgeConfig,
    seed: int,
) -> dict[str, list[Judgment]]:
    """Judge every (candidate, item, rubric, repeat); {candidate: its judgments} (never raises on judge failures).

    Items without a usable response (generation failed, or absent from the file) get unscored
    judgments that say why, so they are counted rather than silently dropped.
    """
    tasks = [
        _Task(model, item, index, repeat, responses.get(item.id))
        for model, responses in candidates.items()
        for item in items
        for index in range(len(item.rubrics))
        for repeat in range(config.repeats)
    ]
    pending: list[_Task] = []
    for task in tasks:
        if task.response is None:
            task.error = "no response for this item"
        elif task.response.error is not None:
            task.error = f"generation failed: {task.response.error}"
        else:
            pending.append(task)
    names = ", ".join(candidates)
    asking = config  # becomes the free-text protocol once the server shows it ignores the schema
    for attempt in range(config.max_reasks + 1):
        if not pending:
            break
        requests = []
        for task in pending:
            task.seed = derive_seed(seed, "judge", task.item.id, task.rubric_index, task.repeat, attempt)
            answer = task.response.response if task.response else ""
            request = judge_request(task.item, answer, task.rubric_index, asking, task.seed)
            task.hash = prompt_hash(request)
            requests.append(request)
            task.asked.append(request)
        desc = f"judge {names}" + (f" (verdict retry {attempt})" if attempt else "")
        retry: list[_Task] = []
        results = complete_unique(engine, requests, desc)
        if asking.constrained and any(ignored_schema(result) for result in results):
            print(f"judge: {engine.model_id} ignores response_format; re-asks ask for the free-text verdict")
            asking = config.model_copy(update={"constrained": False})
        for task, result in zip(pending, results):
            task.attempts += 1
            if not result.ok and not result.text:
                # Keep the text of an earlier, unparseable answer: it is still the best record.
                task.error, task.call_failed = result.error, True
            else:
                task.raw, task.read = result.text, verdict_text(result)
                task.returned_model = result.model or None
                task.verdict = parse_verdict(task.read)
                task.call_failed = False
                task.error = None if task.verdict is not None else (result.error or "no verdict in the judge's answer")
            if task.verdict is None:
                retry.append(task)
        pending = retry
    # A verdict still unreadable after its re-asks: its answers leave the engine's look-ups (kept
    # in the cache's `rejected` table), so a re-run of the judge asks for it afresh.
    for task in pending:
        engine.reject(task.asked, task.error or "no verdict")
    judgments: dict[str, list[Judgment]] = {model: [] for model in candidates}
    for task in tasks:
        judgments[task.model].append(task.judgment(engine.model_id))
    return judgments


def ignored_schema(result: ChatResult) -> bool:
    """An answer to a structured request that is not even the start of JSON: the server ignored
    `response_format` (constrained decoding always writes `{` first; a cut answer still does)."""
    text = result.text.strip()
    return result.parsed is None and bool(text) and not text.startswith(("{", "```"))


def _complete(engine: LLMEngine, requests: list[ChatRequest], desc: str) -> list[ChatResult]:
    """Engine answers; if the engine itself raises, every request of the batch becomes a failed call
    (but for the spending cap, which stops the judge)."""
    try:
        return engine.complete(requests, desc=desc)
    except SpendingCapReached:
        raise  # the user's own limit: the stage stops, its answers are in the cache
    except Exception as exc:  # noqa: BLE001 - a judge failure must not lose the stage's work
        reason = f"{type(exc).__name__}: {exc}"
        return [ChatResult("", error=reason) for _ in requests]


def complete_unique(engine: LLMEngine, requests: list[ChatRequest], desc: str) -> list[ChatResult]:
    """`_complete` with each distinct request sent once (candidates with equal answers ask the same)."""
    keys = [request.cache_key(engine.model_id) for request in requests]
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    answers = dict(zip(first, _complete(engine, [requests[i] for i in first.values()], desc)))
    return [answers[key] for key in keys]
