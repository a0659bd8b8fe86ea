"""Stage `mt_bench`: one candidate answers MT-Bench's two turns; `judge.llm` grades each turn 1-10.

The protocol of FastChat's llm_judge single-answer grading (shared/FORMATS.md):
- the candidate answers turn 1, then turn 2 with the first exchange in context, at FastChat's
  temperature for the question's category (`evals.mt_bench.category_temperature`);
- turn 1 is judged on its own, turn 2 with the whole conversation (the judge is told to grade
  the second answer); math, reasoning and coding questions are judged against the reference
  answer (the question's `reference`, or FastChat's reference-answer file);
- the judge ends with `Rating: [[n]]`, n in 1..10. Unlike FastChat (first match, failures
  silently dropped), the verdict is read from the END of the answer, an unreadable one is
  re-asked with a new seed up to `max_reasks` times, and what stays unscored is counted.

The judge's wording is ours by default (the same sections and verdict format as FastChat's);
`evals.mt_bench.judge_prompts` names FastChat's judge_prompts.jsonl to judge with its exact text.

Writes, per candidate, artifacts/eval/mt_bench/<model>/answers.jsonl (FastChat's model_answer
format), .../judgments.jsonl (one row per question x turn: score, raw answer, attempts, prompt
name) and metrics/mt_bench/<model>.json: the mean over every scored turn (MT-Bench's score),
per turn and per category.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.config import Params, Sampling
from janus_align.config.schema import MTBenchConfig
from janus_align.errors import JanusError
from janus_align.evaluate import hub_sets
from janus_align.evaluate.eval_formats import (
    NEEDS_REFERENCE,
    FormatError,
    MTBenchQuestion,
    load_mt_bench,
    load_mt_bench_references,
)
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.records import iter_numbered_jsonl, write_json, write_jsonl
from janus_align.seeding import derive_seed

# The four single-answer prompts of FastChat's judge_prompts.jsonl, by (reference?, turn 2?).
PROMPT_NAMES = {
    (False, False): "single-v1",
    (True, False): "single-math-v1",
    (False, True): "single-v1-multi-turn",
    (True, True): "single-math-v1-multi-turn",
}

_VERDICT_RULE = (
    "After the explanation, rate the response on a scale of 1 to 10, strictly in this format: "
    '"[[rating]]", for example "Rating: [[5]]".'
)
_GENERAL = (
    "Act as an impartial judge of the quality of an AI assistant's response to the user question below. "
    "Weigh its helpfulness, relevance, accuracy, depth, creativity and level of detail. "
    "Start with a short explanation and be as objective as possible. "
)
_REFERENCE = (
    "Act as an impartial judge of the quality of an AI assistant's response to the user question below, "
    "weighing correctness and helpfulness. You are given a reference answer and the assistant's answer. "
    "Start by comparing the assistant's answer with the reference answer, naming and correcting any mistake, "
    "and be as objective as possible. "
)
_SECOND = " Grade only the assistant's answer to the second user question."

_CONVERSATION = (
    "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n"
    "{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n"
    "<|The End of Assistant A's Conversation with User|>"
)
_REFERENCE_CONVERSATION = (
    "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n{ref_answer_1}"
    "\n\n### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n<|The End of Reference Answer|>\n\n\n"
)

# Our prompts, in FastChat's layout: (system prompt, user template) by name.
OUR_PROMPTS: dict[str, tuple[str, str]] = {
    "single-v1": (
        "You are a helpful assistant.",
        f"[Instruction]\n{_GENERAL}{_VERDICT_RULE}\n\n[Question]\n{{question}}\n\n"
        "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
    ),
    "single-math-v1": (
        "You are a helpful assistant.",
        f"[Instruction]\n{_REFERENCE}{_VERDICT_RULE}\n\n[Question]\n{{question}}\n\n"
        "[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n"
        "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
    ),
    "single-v1-multi-turn": (_GENERAL.replace("below", "") + _SECOND.strip() + " " + _VERDICT_RULE, _CONVERSATION),
    "single-math-v1-multi-turn": (
        _REFERENCE.replace("below", "") + _SECOND.strip() + " " + _VERDICT_RULE,
        _REFERENCE_CONVERSATION + _CONVERSATION,
    ),
}

# Room the JSON wrapper `{"explanation": "", "rating": n}` needs, in tokens.
_JSON_OVERHEAD_TOKENS = 20
_DOUBLE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_SINGLE = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")


def parse_rating(text: str | None) -> float | None:
    """The `[[n]]` verdict closest to the end (else the last `[n]`); None outside 1..10 or absent.

    >>> parse_rating("A rating of [[3]] would be harsh. Rating: [[8]]")
    8.0
    >>> parse_rating("Rating: [[11]]") is None
    True
    """
    if not text:
        return None
    for pattern in (_DOUBLE, _SINGLE):
        found = list(pattern.finditer(text))
        if found:
            value = float(found[-1].group(1))
            return value if 1.0 <= value <= 10.0 else None
    return None


def rating_schema(max_new_tokens: int) -> dict[str, Any]:
    """JSON schema of a constrained verdict; the explanation is capped so the JSON always closes."""
    return {
        "type": "object",
        "properties": {
            "explanation": {"type": "string", "maxLength": max(8, max_new_tokens - _JSON_OVERHEAD_TOKENS)},
            "rating": {"type": "integer", "enum": list(range(1, 11))},
        },
        "required": ["explanation", "rating"],
        "additionalProperties": False,
    }


def rating_text(result: ChatResult) -> str:
    """The text to read the verdict from: constrained JSON becomes `explanation Rating: [[n]]`."""
    parsed = result.parsed
    if isinstance(parsed, dict) and "rating" in parsed:
        return f"{parsed.get('explanation', '')}\nRating: [[{parsed['rating']}]]"
    return result.text


def load_judge_prompts(path: str | Path | None) -> dict[str, tuple[str, str]]:
    """(system prompt, template) per single-answer prompt: FastChat's file if given, else ours."""
    if path is None:
        return OUR_PROMPTS
    path = Path(path)
    found: dict[str, tuple[str, str]] = {}
    if not path.is_file():
        raise JanusError(f"evals.mt_bench.judge_prompts: {path}: no such file")
    for number, row in iter_numbered_jsonl(path):
        if row.get("name") in OUR_PROMPTS:
            for key in ("system_prompt", "prompt_template"):
                if not isinstance(row.get(key), str):
                    raise FormatError(f"{path}:{number}: key `{key}` must be a string")
            found[row["name"]] = (row["system_prompt"], row["prompt_template"])
    missing = sorted(set(OUR_PROMPTS) - set(found))
    if missing:
        raise FormatError(f"{path}: no judge prompt named {', '.join(missing)}")
    return found


def references_for(questions: Sequence[MTBenchQuestion], config: MTBenchConfig) -> dict[Any, tuple[str, ...]]:
    """Reference answers per question id: FastChat's file first (when set), else each question's `reference`."""
    extra = load_mt_bench_references(config.reference_answers) if config.reference_answers else {}
    found: dict[Any, tuple[str, ...]] = {}
    for question in questions:
        reference = extra.get(question.question_id) or question.reference
        if reference:
            found[question.question_id] = reference
    return found


def judge_prompt(
    prompts: Mapping[str, tuple[str, str]],
    question: MTBenchQuestion,
    answers: Sequence[str],
    turn: int,
    reference: Sequence[str] | None,
) -> tuple[str, str, str]:
    """(prompt name, system, user) that judge `turn` (1 or 2) of one answered question."""
    use_reference = question.needs_reference and bool(reference)
    name = PROMPT_NAMES[(use_reference, turn == 2)]
    system, template = prompts[name]
    ref = list(reference or []) + ["", ""]
    values = {
        "question": question.turns[0],
        "answer": answers[0],
        "question_1": question.turns[0],
        "question_2": question.turns[1],
        "answer_1": answers[0],
        "answer_2": answers[1] if len(answers) > 1 else "",
        "ref_answer_1": ref[0],
        "ref_answer_2": ref[1],
    }
    return name, system, template.format(**values)


def answer_sampling(config: MTBenchConfig, category: str) -> Sampling:
    """The candidate's sampling for a category: `sampling` at FastChat's temperature for it."""
    temperature = config.category_temperature.get(category)
    if temperature is None:
        return config.sampling
    return config.sampling.model_copy(update={"temperature": temperature})


def answer_questions(
    engine: LLMEngine, questions: Sequence[MTBenchQuestion], config: MTBenchConfig, seed: int
) -> tuple[list[list[str]], list[str | None]]:
    """Both turns of every question: (answers per question, the first error per question)."""
    answers: list[list[str]] = [[] for _ in questions]
    errors: list[str | None] = [None for _ in questions]
    history: list[list[dict[str, str]]] = [
        [{"role": "system", "content": config.system}] if config.system else [] for _ in questions
    ]
    for turn in (0, 1):
        requests = []
        for index, question in enumerate(questions):
            history[index].append({"role": "user", "content": question.turns[turn]})
            requests.append(
                ChatRequest(
                    tuple(history[index]),
                    answer_sampling(config, question.category),
                    derive_seed(seed, "mt_bench", question.question_id, turn),
                )
            )
        results = engine.complete(requests, desc=f"mt_bench turn {turn + 1}")
        for index, result in enumerate(results):
            text = result.text if result.ok else ""
            if not result.ok and errors[index] is None:
                errors[index] = f"turn {turn + 1}: {result.error}"
            answers[index].append(text)
            history[index].append({"role": "assistant", "content": text})
    return answers, errors


@dataclass
class TurnJudgment:
    """One judged turn, as written to judgments.jsonl."""

    question_id: Any
    category: str
    turn: int
    prompt_name: str
    user_prompt: str
    score: float | None = None
    judgment: str | None = None
    error: str | None = None
    attempts: int = 0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def judge_answers(
    engine: LLMEngine,
    questions: Sequence[MTBenchQuestion],
    answers: Sequence[Sequence[str]],
    errors: Sequence[str | None],
    references: Mapping[Any, Sequence[str]],
    prompts: Mapping[str, tuple[str, str]],
    config: MTBenchConfig,
    seed: int,
) -> list[TurnJudgment]:
    """Every (question, turn) judged, unreadable verdicts re-asked; never raises on judge failures."""
    rows: list[tuple[TurnJudgment, str]] = []
    for question, answer, error in zip(questions, answers, errors):
        for turn in (1, 2):
            name, system, user = judge_prompt(prompts, question, answer, turn, references.get(question.question_id))
            row = TurnJudgment(question.question_id, question.category, turn, name, user)
            row.extra["with_reference"] = name.startswith("single-math")
            if error is not None:
                row.error = f"no answer: {error}"
            rows.append((row, system))
    sampling = config.judge_sampling
    schema = rating_schema(sampling.max_new_tokens) if config.constrained else None
    pending = [(row, system) for row, system in rows if row.error is None]
    for attempt in range(config.max_reasks + 1):
        if not pending:
            break
        requests = []
        for row, system in pending:
            row.seed = derive_seed(seed, "mt_bench_judge", row.question_id, row.turn, attempt)
            requests.append(
                ChatRequest.of(row.user_prompt, system=system, sampling=sampling, seed=row.seed, response_schema=schema)
            )
        try:
            results = engine.complete(requests, desc="mt_bench judge" + (f" (retry {attempt})" if attempt else ""))
        except Exception as exc:  # noqa: BLE001 - a judge failure must not lose the answers
            results = [ChatResult("", error=f"{type(exc).__name__}: {exc}") for _ in requests]
        retry = []
        for (row, system), result in zip(pending, results):
            row.attempts += 1
            if result.text or result.ok:
                row.judgment = rating_text(result)
                row.score = parse_rating(row.judgment)
                row.error = None if row.score is not None else (result.error or "no [[rating]] in the judge's answer")
            else:
                row.error = result.error
            if row.score is None:
                retry.append((row, system))
        pending = retry
    return [row for row, _ in rows]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(questions: Sequence[MTBenchQuestion], judgments: Sequence[TurnJudgment]) -> dict[str, Any]:
    """MT-Bench's score (mean over every scored turn), per turn and per category, with the unscored counted."""
    scored = [row for row in judgments if row.score is not None]
    per_category: dict[str, list[float]] = defaultdict(list)
    per_category_turn: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in scored:
        assert row.score is not None
        per_category[row.category].append(row.score)
        per_category_turn[row.category][f"turn_{row.turn}"].append(row.score)
    return {
        "questions": len(questions),
        "score": _mean([r.score for r in scored if r.score is not None]),
        "turn_1": _mean([r.score for r in scored if r.turn == 1 and r.score is not None]),
        "turn_2": _mean([r.score for r in scored if r.turn == 2 and r.score is not None]),
        "per_category": {name: _mean(values) for name, values in sorted(per_category.items())},
        "per_category_turn": {
            name: {turn: _mean(values) for turn, values in sorted(turns.items())}
            for name, turns in sorted(per_category_turn.items())
        },
        "judgments": len(judgments),
        "scored": len(scored),
        "unscored": len(judgments) - len(scored),
        "unscored_rate": (len(judgments) - len(scored)) / len(judgments) if judgments else 0.0,
        # Turns of math, reasoning and coding questions that had no reference answer to judge against.
        "judged_without_reference": sum(
            1 for row in judgments if row.category in NEEDS_REFERENCE and not row.extra.get("with_reference")
        ),
    }


def answer_rows(
    questions: Sequence[MTBenchQuestion], answers: Sequence[Sequence[str]], model: str, model_id: str
) -> list[dict[str, Any]]:
    """The answers in FastChat's model_answer format."""
    now = time.time()
    return [
        {
            "question_id": question.question_id,
            "answer_id": f"{model}-{question.question_id}",
            "model_id": model,
            "engine_model_id": model_id,
            "choices": [{"index": 0, "turns": list(answer)}],
            "tstamp": now,
        }
        for question, answer in zip(questions, answers)
    ]


def judgment_rows(judgments: Sequence[TurnJudgment], model: str, judge_model: str) -> list[dict[str, Any]]:
    """One row per judged turn (FastChat's single-judgment fields, plus attempts and error)."""
    return [
        {
            "question_id": row.question_id,
            "category": row.category,
            "model": model,
            "judge": [judge_model, row.prompt_name],
            "turn": row.turn,
            "score": row.score,
            "judgment": row.judgment,
            "user_prompt": row.user_prompt,
            "error": row.error,
            "attempts": row.attempts,
            "seed": row.seed,
        }
        for row in judgments
    ]


def questions_file(config: MTBenchConfig) -> Path:
    """`evals.mt_bench.questions`: our sample when unset, a question.jsonl, or an `hf:` dataset id."""
    return hub_sets.resolve(
        config.questions, paths.MT_BENCH_QUESTIONS, paths.MT_BENCH_DIR, "question.jsonl", "evals.mt_bench.questions"
    )


def run(params: Params, model: str) -> dict[str, Any]:
    """`janus mt_bench --model NAME`: answer, judge and score one candidate (a no-op while disabled)."""
    import mlflow

    from janus_align import tracking
    from janus_align.evaluate.generate import candidate_config, resolve_prompt_format
    from janus_align.evaluate.judging import open_judge
    from janus_align.evaluate.scoring import cluster_bootstrap_ci
    from janus_align.llm.engine import opened_engine

    config = params.evals.mt_bench
    out_dir, metrics_path = paths.mt_bench_dir(model), paths.mt_bench_metrics(model)
    if not config.enabled:
        write_jsonl(out_dir / "answers.jsonl", [])
        write_jsonl(out_dir / "judgments.jsonl", [])
        write_json(metrics_path, {"model": model, "enabled": False})
        print(f"mt_bench {model}: off (evals.mt_bench.enabled: false)")
        return {"model": model, "enabled": False}
    questions = load_mt_bench(questions_file(config))[: config.max_questions]
    references = references_for(questions, config)
    prompts = load_judge_prompts(config.judge_prompts)
    settings = candidate_config(params, model)
    with opened_engine(
        settings, f"mt_bench --model {model}", model=model, prompt_format=resolve_prompt_format(params)
    ) as engine:
        answers, errors = answer_questions(engine, questions, config, params.seed)
        answer_usage, model_id = engine.usage.as_dict(), engine.model_id
    with open_judge(params.judge) as judge:
        judgments = judge_answers(judge, questions, answers, errors, references, prompts, config, params.seed)
        judge_usage, judge_model = judge.usage.as_dict(), judge.model_id
    write_jsonl(out_dir / "answers.jsonl", answer_rows(questions, answers, model, model_id))
    write_jsonl(out_dir / "judgments.jsonl", judgment_rows(judgments, model, judge_model))
    # A question's two turns are resampled together (they share a question and a conversation).
    clusters = [
        [r.score for r in judgments if r.question_id == q.question_id and r.score is not None] for q in questions
    ]
    low, high = cluster_bootstrap_ci(
        clusters, params.report.bootstrap_samples, params.report.confidence, derive_seed(params.seed, "mt_bench_ci")
    )
    metrics = {
        "model": model,
        "enabled": True,
        "judge_model": judge_model,
        "judge_prompts": "fastchat" if config.judge_prompts else "ours",
        **summarize(questions, judgments),
        "ci_low": low,
        "ci_high": high,
        "confidence": params.report.confidence,
        "failed_answers": sum(1 for e in errors if e),
        "answer_usage": answer_usage,
        "judge_usage": judge_usage,
    }
    write_json(metrics_path, metrics)
    shown = f"{metrics['score']:.2f} [{low or 0:.2f}, {high or 0:.2f}]" if metrics["score"] is not None else "n/a"
    print(
        f"mt_bench {model}: score {shown} over {metrics['scored']}/{metrics['judgments']} turns "
        f"({metrics['unscored']} unscored) -> {metrics_path}"
    )
    mlflow.set_tags({"candidate": model, "judge_model": judge_model})
    mlflow.log_metrics(tracking.metrics(metrics))
    return metrics
