"""The official files of AlpacaEval 2.0 and Arena-Hard-Auto: read strictly, written as their tools read them.

AlpacaEval (`alpaca_eval.json`): a JSON list of `{"instruction", "output", "generator",
"dataset"}`; `output` is the reference model's answer (`generator`), `dataset` the sub-source.
Model outputs are the same list with our model's `output` and name as `generator`
(`<model>_outputs.json`, what `alpaca_eval --model_outputs` reads).

Arena-Hard-Auto v0.1: questions `{"question_id", "category", "cluster", "turns": [{"content"}]}`
(JSONL) and answers `{"question_id", "answer_id", "model_id", "choices": [{"index", "turns":
[{"content", "token_len"}]}], "tstamp"}` (JSONL, `model_answer/<model>.jsonl`).

A broken file raises one line naming the file, the line (JSONL) or row (JSON list) and the key.
`validate_alpaca_eval(path)` and `validate_arena_hard(path)` (a question or an answer file) return
the number of items, for `janus validate-data`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from janus_align.errors import JanusError
from janus_align.records import RecordError, iter_located, iter_rows, write_json, write_jsonl

_Text = Field(min_length=1)


class AlpacaEvalRow(BaseModel):
    """One row of the evaluation set (the reference's answer) or of a model's outputs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    instruction: str = _Text
    output: str
    generator: str = _Text
    dataset: str = "custom"  # model outputs may leave it out


class Turn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    content: str


class ArenaHardQuestion(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    question_id: str = _Text
    category: str
    cluster: str = ""
    turns: list[Turn] = Field(min_length=1)


class AnswerTurn(Turn):
    token_len: int | None = None


class Choice(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    index: int = 0
    turns: list[AnswerTurn] = Field(min_length=1)


class ArenaHardAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    question_id: str = _Text
    answer_id: str = ""
    model_id: str = _Text
    choices: list[Choice] = Field(min_length=1)
    tstamp: float | None = None

    @property
    def text(self) -> str:
        """The answer to the question's (first) turn."""
        return self.choices[0].turns[0].content


def _unique(rows: Iterable[tuple[str, Any]], key: str) -> list[Any]:
    seen: set[str] = set()
    kept = []
    for where, row in rows:
        value = getattr(row, key)
        if value in seen:
            raise RecordError(f"{where}: {key}: duplicate {value!r}")
        seen.add(value)
        kept.append(row)
    return kept


def load_alpaca_eval(path: str | Path) -> list[AlpacaEvalRow]:
    """The rows of an AlpacaEval file (a JSON list), each instruction once."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise RecordError(f"{path}: an AlpacaEval file is a JSON list of {{instruction, output, generator, dataset}}")
    rows = _unique(iter_rows(path, AlpacaEvalRow), "instruction")
    if not rows:
        raise RecordError(f"{path}: no rows")
    return rows


def load_arena_hard_questions(path: str | Path) -> list[ArenaHardQuestion]:
    rows = _unique(iter_rows(path, ArenaHardQuestion), "question_id")
    if not rows:
        raise RecordError(f"{path}: no questions")
    return rows


def load_arena_hard_answers(path: str | Path) -> dict[str, ArenaHardAnswer]:
    """{question_id: answer} of one model's answer file."""
    return {row.question_id: row for row in _unique(iter_rows(path, ArenaHardAnswer), "question_id")}


def validate_alpaca_eval(path: str | Path) -> int:
    """The number of rows of a valid AlpacaEval evaluation set or outputs file; RecordError naming the row and key."""
    return len(load_alpaca_eval(path))


def validate_arena_hard(path: str | Path) -> int:
    """The number of items of a valid Arena-Hard question file or answer file (told apart by `choices`)."""
    first = next((row for _, row in iter_located(path)), None)
    if first is None:
        raise RecordError(f"{path}: no rows")
    return len(load_arena_hard_answers(path) if "choices" in first else load_arena_hard_questions(path))


def write_alpaca_outputs(path: Path, eval_set: Sequence[AlpacaEvalRow], outputs: Sequence[str], model: str) -> None:
    """Our model's outputs as `alpaca_eval` reads them: the evaluation set with our output and generator."""
    write_json(
        path,
        [
            {"instruction": row.instruction, "output": output, "generator": model, "dataset": row.dataset}
            for row, output in zip(eval_set, outputs)
        ],
    )


def write_arena_hard_answers(
    path: Path, questions: Sequence[ArenaHardQuestion], outputs: Sequence[str], tokens: Sequence[int], model: str
) -> None:
    """Our model's answers in the Arena-Hard answer format (one choice, one turn per question)."""
    write_jsonl(
        path,
        [
            {
                "question_id": question.question_id,
                "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{model}/{question.question_id}").hex,
                "model_id": model,
                "choices": [{"index": 0, "turns": [{"content": output, "token_len": count}]}],
                "tstamp": time.time(),
            }
            for question, output, count in zip(questions, outputs, tokens)
        ],
    )


def require_answers(path: Path, questions: Sequence[ArenaHardQuestion]) -> dict[str, ArenaHardAnswer]:
    """The baseline's answers, one for every question (a missing one is an error naming the question)."""
    if not path.is_file():
        raise JanusError(f"{path}: the baseline's answers are missing (evals.arena_hard.baseline names the file)")
    answers = load_arena_hard_answers(path)
    missing = [q.question_id for q in questions if q.question_id not in answers]
    if missing:
        raise JanusError(f"{path}: no answer for question_id {missing[0]!r} ({len(missing)} missing)")
    return answers
