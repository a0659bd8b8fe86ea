"""Stage `judge`: Prometheus-style absolute grading of every candidate, one judge call per rubric.

Protocol (PAPER.md section 4): the judge reads the instruction (the prompt only; the system
message too when `judge.show_system`), the response, the reference answer (as a score-5
example) and ONE rubric as `json.dumps(rubric, indent=4)`, and writes feedback followed by
`[RESULT] n`, n in 1..5. Every rubric of every item is judged `judge.repeats` times with
different seeds.

Verdicts are read by one function, `parse_verdict`, everywhere. A verdict that cannot be read
is re-asked with a new seed up to `judge.max_reasks` times, then recorded unscored with its raw
text; a failed judge call (HTTP error, crashed backend) is recorded the same way. Nothing
unscored ever counts as 0: scoring leaves it out and counts it.

With `judge.constrained` (for small local judges that do not follow the free-text format) the
judge answers JSON `{"feedback", "score"}` under constrained decoding; the answer is rewritten
as `Feedback: ... [RESULT] n` and read by the same `parse_verdict`.

All candidates (generate.candidates + generate.external, or those named with --model) are
judged by one judge engine, and each attempt (the first ask, then each verdict re-ask) is ONE
engine call over the pending requests of every candidate, so the engine batches them together
and prefills shared prompt prefixes once. A request's seed does not depend on the candidate, so
a candidate's requests are exactly those it gets judged alone (`judge_all` is this with one
candidate); identical requests (two candidates that gave the same answer) are sent once and
share the answer, as the request cache would give it. DVC runs one judge stage per candidate
(`--model NAME`): on the 2-core CPU one big batch was measured slower (docs/decisions.md).

Writes, per candidate, artifacts/eval/judgments/<model>.jsonl (one row per item x rubric x repeat:
raw text, verdict, judge model id, prompt hash), the official
artifacts/eval/official/<model>_evaluation.json and metrics/eval/<model>.json (its `judge_usage`
is the judge engine's usage over the whole run, shared by the candidates judged together), and
logs each candidate's metrics in a nested MLflow run `judge-<model>` tagged `candidate`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from janus_align.bench.schema import BENCH_FILE, BenchItem, Rubric, load_bench
from janus_align.config import Params
from janus_align.config.schema import JudgeConfig
from janus_align.errors import JanusError
from janus_align.evaluate import files, scoring
from janus_align.evaluate.responses import Response, load_responses
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.records import write_json, write_jsonl
from janus_align.seeding import derive_seed

JUDGE_SYSTEM = (
    "You are a fair and impartial judge. You grade a response against one score rubric, "
    "holding every response to the same absolute standard, and you explain the grade before giving it."
)

_OUTPUT_TEXT = (
    '3. The output format should look as follows: "Feedback: (write a feedback for criteria) '
    '[RESULT] (an integer number between 1 and 5)"'
)
_OUTPUT_JSON = (
    '3. Answer with a JSON object: {"feedback": "(write a feedback for criteria)", '
    '"score": (an integer number between 1 and 5)}'
)

# Section headers and their order are Prometheus' absolute-grading layout, as in the paper's
# judge; the wording of the rules is ours.
JUDGE_TEMPLATE = """###Task Description:
You are given an instruction, a response to evaluate, a reference answer that would receive a score of 5, and a score rubric that states the evaluation criterion.
1. Write detailed feedback that assesses the response strictly against the score rubric, not against general quality.
2. After the feedback, give a score that is an integer between 1 and 5, chosen with the rubric's score descriptions.
{output_rule}
4. Do not write any other opening, closing or explanation.

###The instruction to evaluate:
{instruction}

###Response to evaluate:
{response}

###Reference Answer (Score 5):
{reference_answer}

###Score Rubrics:
{rubric}

###Feedback:"""

TEMPLATE_VERSION = (
    "prometheus-abs-v1-"
    + hashlib.sha256("\x00".join([JUDGE_SYSTEM, JUDGE_TEMPLATE, _OUTPUT_TEXT, _OUTPUT_JSON]).encode()).hexdigest()[:8]
)

# Room the JSON wrapper `{"feedback": "", "score": n}` needs, in tokens.
_JSON_OVERHEAD_TOKENS = 20


# ---------------------------------------------------------------------------------------------
# Reading a verdict


_NUMBER = r"(?<![\d.])(\d+)(?!\d|\.\d)"
# `[RESULT] 4`, `[RESULT]: 4`, `[RESULT] (4)`, `[RESULT] [4]`, `**[RESULT]** 4`, `[RESULT] Score: 4/5`...
_MARKER = re.compile(
    r"\[\s*(?:RESULT|SCORE)\s*\][\s:*=]*(?:(?:score|rating)\s*(?:of|is|=|:)?\s*)?[\s(\[*]*" + _NUMBER,
    re.IGNORECASE,
)
# Forms without the marker count only when they close the text, so a number inside the
# feedback ("3 of the 5 steps", "a score of 5 would need...") is never taken for the verdict.
_TRAILER = r"[\s.!*)\]\"'`]*$"
_END_FORMS = (
    re.compile(
        r"(?:score|result|rating|verdict)\s*(?:of|is|=|:)?[\s:*(\[]*"
        + _NUMBER
        + r"\s*(?:/\s*5|out\s+of\s+5)?"
        + _TRAILER,
        re.IGNORECASE,
    ),
    re.compile(_NUMBER + r"\s*/\s*5" + _TRAILER),
    re.compile(_NUMBER + r"\s+out\s+of\s+5" + _TRAILER, re.IGNORECASE),
)
# Special tokens some servers leave in the text.
_END_TOKENS = re.compile(r"(?:\s*(?:</s>|<\|im_end\|>|<\|eot_id\|>|<\|endoftext\|>))+\s*$")
_FEEDBACK_LABEL = re.compile(r"^\s*(?:#+\s*)?\**feedback\**\s*:?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class _Found:
    start: int  # where the verdict's wording starts (the feedback ends there)
    at: int  # where its number is
    number: int


def _find_verdict(text: str) -> _Found | None:
    """The verdict whose number is closest to the end of the text, in any accepted form.

    When two forms read the same number (`Score: 4/5` is both `Score: n` and `n/5`), the one
    that starts earlier wins, so its whole wording is cut from the feedback.
    """
    body = _END_TOKENS.sub("", text)
    matches = list(_MARKER.finditer(body)) + [m for form in _END_FORMS if (m := form.search(body))]
    found = [_Found(m.start(), m.start(1), int(m.group(1))) for m in matches]
    return max(found, key=lambda f: (f.at, -f.start)) if found else None


def parse_verdict(text: str | None) -> int | None:
    """The judge's score 1..5, read from the end of its answer; None when there is none.

    Accepts `[RESULT] 4`, `[RESULT]: 4`, `[RESULT] (4)`, `Score: 4`, `4/5`, `4 out of 5`.
    The verdict closest to the end wins; a number outside 1..5 there means no verdict (an
    earlier, valid-looking number is not used instead).

    >>> parse_verdict("Feedback: a score of 5 needs more detail. [RESULT] 3")
    3
    >>> parse_verdict("Feedback: covers 3 of the 5 steps. Score: 4/5.")
    4
    >>> parse_verdict("[RESULT] 7") is None
    True
    """
    if not text:
        return None
    found = _find_verdict(text)
    if found is None or not 1 <= found.number <= 5:
        return None
    return found.number


def feedback_of(text: str | None) -> str:
    """The judge's feedback: its text before the verdict, without the `Feedback:` label."""
    if not text:
        return ""
    found = _find_verdict(text)
    body = text[: found.start] if found is not None else text
    return _FEEDBACK_LABEL.sub("", body).strip().rstrip("*#-").strip()


# ---------------------------------------------------------------------------------------------
# Building the judge's request


def judge_instruction(item: BenchItem, show_system: bool) -> str:
    """What the judge sees as the instruction: the prompt, preceded by the system message if shown."""
    return f"{item.system}\n{item.prompt}" if show_system and item.system else item.prompt


def render_judge_prompt(
    instruction: str,
    response: str,
    reference_answer: str,
    rubric: Rubric | Mapping[str, Any],
    constrained: bool = False,
) -> str:
    """The judge's user turn for one rubric."""
    as_dict = rubric.as_official() if isinstance(rubric, Rubric) else dict(rubric)
    return JUDGE_TEMPLATE.format(
        output_rule=_OUTPUT_JSON if constrained else _OUTPUT_TEXT,
        instruction=instruction,
        response=response,
        reference_answer=reference_answer,
        rubric=json.dumps(as_dict, indent=4),
    )


def verdict_schema(max_new_tokens: int) -> dict[str, Any]:
    """JSON schema of a constrained verdict; the feedback is capped so the JSON always closes."""
    return {
        "type": "object",
        "properties": {
            "feedback": {"type": "string", "maxLength": max(8, max_new_tokens - _JSON_OVERHEAD_TOKENS)},
            "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        },
        "required": ["feedback", "score"],
        "additionalProperties": False,
    }


def prompt_hash(request: ChatRequest) -> str:
    """Identity of the exact judge input (messages only: seeds differ between repeats)."""
    blob = json.dumps(list(request.messages), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def verdict_text(result: ChatResult) -> str:
    """The answer as text to read the verdict from: constrained JSON becomes `Feedback: .. [RESULT] n`."""
    parsed = result.parsed
    if isinstance(parsed, dict) and "score" in parsed:
        return f"Feedback: {parsed.get('feedback', '')} [RESULT] {parsed['score']}"
    return result.text


# ---------------------------------------------------------------------------------------------
# Judging


@dataclass
class _Task:
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


def _request(task: _Task, config: JudgeConfig, seed: int) -> ChatRequest:
    user = render_judge_prompt(
        judge_instruction(task.item, config.show_system),
        task.response.response if task.response else "",
        task.item.reference_answer,
        task.item.rubrics[task.rubric_index],
        config.constrained,
    )
    sampling = config.llm.sampling
    schema = verdict_schema(sampling.max_new_tokens) if config.constrained else None
    return ChatRequest.of(user, system=JUDGE_SYSTEM, sampling=sampling, seed=seed, response_schema=schema)


def _complete(engine: LLMEngine, requests: list[ChatRequest], desc: str) -> list[ChatResult]:
    """Engine answers; if the engine itself raises, every request of the batch becomes a failed call."""
    try:
        return engine.complete(requests, desc=desc)
    except Exception as exc:  # noqa: BLE001 - a judge failure must not lose the stage's work
        reason = f"{type(exc).__name__}: {exc}"
        return [ChatResult("", error=reason) for _ in requests]


def judge_candidates(
    engine: LLMEngine,
    items: Sequence[BenchItem],
    candidates: Mapping[str, Mapping[str, Response]],
    config: JudgeConfig,
    seed: int,
) -> dict[str, list[dict[str, Any]]]:
    """Judge every (candidate, item, rubric, repeat); {candidate: its judgment rows} (never raises on judge failures).

    Each attempt is one `engine.complete` call over the pending tasks of every candidate.
    Items without a usable response (generation failed, or absent from the file) get unscored
    rows that say why, so they are counted rather than silently dropped.
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
    for attempt in range(config.max_reasks + 1):
        if not pending:
            break
        requests = []
        for task in pending:
            task.seed = derive_seed(seed, "judge", task.item.id, task.rubric_index, task.repeat, attempt)
            request = _request(task, config, task.seed)
            task.hash = task.hash or prompt_hash(request)
            requests.append(request)
        desc = f"judge {names}" + (f" (verdict retry {attempt})" if attempt else "")
        retry: list[_Task] = []
        for task, result in zip(pending, _complete_unique(engine, requests, desc)):
            task.attempts += 1
            if not result.ok and not result.text:
                # Keep the text of an earlier, unparseable answer: it is still the best record.
                task.error, task.call_failed = result.error, True
            else:
                task.raw, task.read = result.text, verdict_text(result)
                task.verdict = parse_verdict(task.read)
                task.call_failed = False
                task.error = None if task.verdict is not None else (result.error or "no verdict in the judge's answer")
            if task.verdict is None:
                retry.append(task)
        pending = retry
    rows: dict[str, list[dict[str, Any]]] = {model: [] for model in candidates}
    for task in tasks:
        rows[task.model].append(_row(task, engine.model_id))
    return rows


def judge_all(
    engine: LLMEngine,
    items: Sequence[BenchItem],
    responses: Mapping[str, Response],
    config: JudgeConfig,
    seed: int,
    model: str,
) -> list[dict[str, Any]]:
    """`judge_candidates` with the one candidate `model`: its judgment rows."""
    return judge_candidates(engine, items, {model: responses}, config, seed)[model]


def _complete_unique(engine: LLMEngine, requests: list[ChatRequest], desc: str) -> list[ChatResult]:
    """`_complete` with each distinct request sent once (candidates with equal answers ask the same)."""
    keys = [request.cache_key(engine.model_id) for request in requests]
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    answers = dict(zip(first, _complete(engine, [requests[i] for i in first.values()], desc)))
    return [answers[key] for key in keys]


def _row(task: _Task, judge_model: str) -> dict[str, Any]:
    return {
        "id": task.item.id,
        "source": task.item.source,
        "model": task.model,
        "rubric_index": task.rubric_index,
        "dimension": task.item.dimension_of(task.rubric_index),
        "repeat": task.repeat,
        "verdict": task.verdict,
        "feedback": feedback_of(task.read),
        "raw": task.raw,
        "error": task.error,
        "call_failed": task.call_failed,
        "attempts": task.attempts,
        "seed": task.seed,
        "judge_model": judge_model,
        "prompt_hash": task.hash,
        "template_version": TEMPLATE_VERSION,
    }


def official_evaluation(
    items: Sequence[BenchItem], responses: Mapping[str, Response], judgments: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The official evaluation JSON: {id: {bench row..., response, feedback: [...], score: [...]}}.

    `score[i]` is rubric i's mean over the scored repeats (None when unscored), `feedback[i]`
    the feedback of its first scored repeat; `score_per_repeat` keeps every run.
    """
    by_key: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for row in judgments:
        by_key.setdefault((str(row["id"]), int(row["rubric_index"])), []).append(row)
    means = scoring.rubric_scores(judgments)
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        feedback, score, per_repeat = [], [], []
        for index in range(len(item.rubrics)):
            rows = sorted(by_key.get((item.id, index), []), key=lambda r: int(r["repeat"]))
            scored = [r for r in rows if r.get("verdict") is not None]
            feedback.append(scored[0]["feedback"] if scored else None)
            mean = means.get((item.id, index))
            score.append(int(mean) if mean is not None and float(mean).is_integer() else mean)
            per_repeat.append([r.get("verdict") for r in rows])
        row = item.official_row()
        row.pop("id")
        response = responses.get(item.id)
        out[item.id] = {
            **row,
            "response": response.response if response and response.error is None else None,
            "feedback": feedback,
            "score": score,
            "score_per_repeat": per_repeat,
        }
    return out


def write_outputs(
    model: str,
    items: Sequence[BenchItem],
    responses: Mapping[str, Response],
    judgments: list[dict[str, Any]],
    judgments_path: Any,
    official_path: Any,
    metrics_path: Any,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the three judge outputs; return the metrics."""
    write_jsonl(judgments_path, judgments)
    write_json(official_path, official_evaluation(items, responses, judgments))
    metrics = {"model": model, **scoring.summarize(judgments, items, responses), **(extra or {})}
    write_json(metrics_path, metrics)
    return metrics


def describe(model: str, metrics: Mapping[str, Any]) -> str:
    """One line for the terminal, the unscored rate included."""
    score = metrics.get("overall")
    shown = f"{score:.3f}" if score is not None else "n/a"
    return (
        f"judge {model}: overall {shown} over {metrics['scored_items']}/{metrics['items']} items; "
        f"unscored {metrics['unscored']}/{metrics['judgments']} verdicts ({metrics['unscored_rate']:.1%}), "
        f"{metrics['failed_calls']} failed judge call(s)"
    )


def open_judge(config: JudgeConfig) -> LLMEngine:
    """The judge's engine; a missing checkpoint or API key is a JanusError naming the setting."""
    from janus_align.llm import open_engine

    try:
        return open_engine(config.llm)
    except (FileNotFoundError, RuntimeError) as exc:
        raise JanusError(f"judge.llm ({config.llm.backend}:{config.llm.model}): {exc}") from None


def judge_responses_of(
    params: Params, items: Sequence[BenchItem], candidates: Mapping[str, Mapping[str, Response]]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], str]:
    """Open the judge, judge every candidate's responses together, close it: (judgments per candidate, usage, judge model id)."""
    engine = open_judge(params.judge)
    try:
        judgments = judge_candidates(engine, items, candidates, params.judge, params.seed)
        return judgments, engine.usage.as_dict(), engine.model_id
    finally:
        engine.close()


def judge_responses(
    params: Params, items: Sequence[BenchItem], responses: Mapping[str, Response], model: str
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """`judge_responses_of` with the one candidate `model`: (judgments, usage, judge model id)."""
    judgments, usage, judge_model = judge_responses_of(params, items, {model: responses})
    return judgments[model], usage, judge_model


def candidate_names(params: Params, models: Sequence[str] | None = None) -> list[str]:
    """The candidates to judge: `models` if given, else generate.candidates + generate.external (duplicates once)."""
    return list(dict.fromkeys(models or [*params.generate.candidates, *params.generate.external]))


def run(params: Params, models: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Judge `models` (default: every candidate) in one batch; write and log each one's outputs."""
    import mlflow

    from janus_align import tracking

    names = candidate_names(params, models)
    if not names:
        raise JanusError("judge: no candidates (generate.candidates and generate.external are empty)")
    missing = [name for name in names if not files.responses_file(name).is_file()]
    if missing:
        raise JanusError(
            f"judge: {', '.join(str(files.responses_file(name)) for name in missing)} missing "
            f"(run `janus generate --model {missing[0]}` first)"
        )
    items = load_bench(BENCH_FILE)
    responses = {name: load_responses(files.responses_file(name)) for name in names}
    judgments, usage, judge_model = judge_responses_of(params, items, responses)
    extra = {"judge_model": judge_model, "judge_repeats": params.judge.repeats, "judge_usage": usage}
    tags = {"judge_model": judge_model, "judge_template": TEMPLATE_VERSION}
    mlflow.set_tags({**tags, "candidates": ",".join(names)})
    mlflow.log_metrics(scoring.numeric_metrics({"judge_usage": usage}))
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        metrics = write_outputs(
            name,
            items,
            responses[name],
            judgments[name],
            files.judgments_file(name),
            files.official_file(name),
            files.eval_metrics_file(name),
            extra,
        )
        print(describe(name, metrics))
        with mlflow.start_run(run_name=f"judge-{name}", nested=True):
            mlflow.set_tags({**tracking.run_tags("judge", params), **tags, "candidate": name})
            mlflow.log_metrics(scoring.numeric_metrics(metrics))
        results[name] = metrics
    return results
