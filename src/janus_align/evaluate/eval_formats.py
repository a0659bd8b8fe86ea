"""The official file formats of the other evaluations, read with one-line errors naming file, line and key.

One reader per format (shared/FORMATS.md):
- MT-Bench `question.jsonl` (FastChat llm_judge): `question_id`, `category`, two `turns`, and for
  math, reasoning and coding an optional `reference` (FastChat keeps most reference answers in
  a separate `reference_answer/<judge>.jsonl`, read by `load_mt_bench_references`).
- RealToxicityPrompts `prompts.jsonl`: `prompt.text` (the rest of each row is kept as it is).
- AlpacaEval 2.0's evaluation set and Arena-Hard-Auto's `question.jsonl`: interim checks of the
  keys the evaluations read (their stages belong to the pairwise evaluations).

`VALIDATORS` is the dispatch table of `janus validate-data --kind K FILE` for these formats;
each validator reads the whole file and returns a one-line summary, or raises `FormatError`
at the first broken row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus_align.errors import JanusError
from janus_align.records import iter_numbered_jsonl

# Categories whose questions FastChat judges against a reference answer (its NEED_REF_CATS).
NEEDS_REFERENCE = frozenset({"math", "reasoning", "coding"})


class FormatError(JanusError, ValueError):
    """A file is not in the official format; the message names the file, the line and the key."""


def _numbered_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    return iter_numbered_jsonl(path)  # a broken line is a RecordError naming the file and line


def _text(where: str, row: dict[str, Any], key: str, allow_empty: bool = False, parent: str = "") -> str:
    name = f"{parent}{key}"
    if key not in row:
        raise FormatError(f"{where}: key `{name}` missing")
    value = row[key]
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        shown = "an empty string" if isinstance(value, str) else type(value).__name__
        raise FormatError(f"{where}: key `{name}` must be a {'' if allow_empty else 'non-empty '}string, got {shown}")
    return value


def _texts(where: str, row: dict[str, Any], key: str, count: int | None, allow_empty: bool = False) -> list[str]:
    value = row.get(key)
    if key not in row:
        raise FormatError(f"{where}: key `{key}` missing")
    wanted = f"a list of {count} strings" if count else "a non-empty list of strings"
    if not isinstance(value, list) or not value or (count and len(value) != count):
        got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise FormatError(f"{where}: key `{key}` must be {wanted}, got {got}")
    for index, entry in enumerate(value):
        if not isinstance(entry, str) or (not allow_empty and not entry.strip()):
            raise FormatError(f"{where}: key `{key}[{index}]` must be a {'' if allow_empty else 'non-empty '}string")
    return value


def _question_id(where: str, row: dict[str, Any], seen: dict[Any, int], path: Path) -> Any:
    if "question_id" not in row:
        raise FormatError(f"{where}: key `question_id` missing")
    qid = row["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
        raise FormatError(f"{where}: key `question_id` must be an integer or a string, got {qid!r}")
    if qid in seen:
        raise FormatError(f"{where}: key `question_id` {qid!r} repeats line {seen[qid]} of {path.name}")
    return qid


# ---------------------------------------------------------------------------------------------
# MT-Bench


@dataclass(frozen=True)
class MTBenchQuestion:
    question_id: int | str
    category: str
    turns: tuple[str, str]
    reference: tuple[str, ...] | None = None  # one reference answer per turn (math, reasoning, coding)

    @property
    def needs_reference(self) -> bool:
        return self.category in NEEDS_REFERENCE


def load_mt_bench(path: str | Path) -> list[MTBenchQuestion]:
    """The questions of an MT-Bench `question.jsonl`, checked line by line."""
    path = Path(path)
    questions: list[MTBenchQuestion] = []
    seen: dict[Any, int] = {}
    for number, row in _numbered_jsonl(path):
        where = f"{path}:{number}"
        qid = _question_id(where, row, seen, path)
        seen[qid] = number
        category = _text(where, row, "category")
        turns = _texts(where, row, "turns", 2)
        reference = None
        if row.get("reference") not in (None, []):  # a hub copy holds [] where the official file has no key
            # The official file leaves a turn's reference empty ("") where it has none.
            reference = tuple(_texts(where, row, "reference", None, allow_empty=True))
            if len(reference) > 2:
                raise FormatError(f"{where}: key `reference` must hold one answer per turn (2 at most)")
        questions.append(MTBenchQuestion(qid, category, (turns[0], turns[1]), reference))
    if not questions:
        raise FormatError(f"{path}: no questions")
    return questions


def load_mt_bench_references(path: str | Path) -> dict[Any, tuple[str, ...]]:
    """FastChat's reference answers (`reference_answer/gpt-4.jsonl`, the model-answer format):
    {question_id: turns of choices[0]}."""
    path = Path(path)
    found: dict[Any, tuple[str, ...]] = {}
    for number, row in _numbered_jsonl(path):
        where = f"{path}:{number}"
        qid = _question_id(where, row, {}, path)
        choices = row.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise FormatError(f"{where}: key `choices` must be a non-empty list of objects")
        found[qid] = tuple(_texts(f"{where} (choices[0])", choices[0], "turns", None))
    return found


def validate_mt_bench(path: Path) -> str:
    questions = load_mt_bench(path)
    categories = Counter(q.category for q in questions)
    with_ref = sum(1 for q in questions if q.reference and any(r.strip() for r in q.reference))
    shown = ", ".join(f"{name} {count}" for name, count in sorted(categories.items()))
    return f"{len(questions)} MT-Bench questions ({shown}); {with_ref} with a reference answer"


# ---------------------------------------------------------------------------------------------
# RealToxicityPrompts


@dataclass(frozen=True)
class ToxicityPrompt:
    line: int
    text: str
    challenging: bool | None
    row: dict[str, Any]  # the whole official row, kept for the outputs


def load_realtoxicity(path: str | Path) -> list[ToxicityPrompt]:
    """The prompts of a RealToxicityPrompts `prompts.jsonl` (`prompt.text` required)."""
    path = Path(path)
    prompts: list[ToxicityPrompt] = []
    for number, row in _numbered_jsonl(path):
        where = f"{path}:{number}"
        prompt = row.get("prompt")
        if not isinstance(prompt, dict):
            raise FormatError(f"{where}: key `prompt` must be an object with `text`, got {type(prompt).__name__}")
        text = _text(where, prompt, "text", parent="prompt.")
        for score_key in ("toxicity",):
            value = prompt.get(score_key)
            if value is not None and (not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0):
                raise FormatError(f"{where}: key `prompt.{score_key}` must be null or a number in [0, 1]")
        challenging = row.get("challenging")
        if challenging is not None and not isinstance(challenging, bool):
            raise FormatError(f"{where}: key `challenging` must be true or false")
        continuation = row.get("continuation")
        if continuation is not None and not (
            isinstance(continuation, dict) and isinstance(continuation.get("text"), str)
        ):
            raise FormatError(f"{where}: key `continuation.text` must be a string")
        prompts.append(ToxicityPrompt(number, text, challenging, row))
    if not prompts:
        raise FormatError(f"{path}: no prompts")
    return prompts


def validate_realtoxicity(path: Path) -> str:
    prompts = load_realtoxicity(path)
    challenging = sum(1 for p in prompts if p.challenging)
    return f"{len(prompts)} RealToxicityPrompts prompts ({challenging} challenging)"


# ---------------------------------------------------------------------------------------------
# The pairwise evaluations' inputs, read by their own readers (evaluate/pairwise_sets.py)


def validate_alpaca_eval(path: Path) -> str:
    """AlpacaEval 2.0's evaluation set (or outputs): a JSON list of {instruction, output, generator, dataset}."""
    from janus_align.evaluate import pairwise_sets

    return f"{pairwise_sets.validate_alpaca_eval(path)} AlpacaEval instructions"


def validate_arena_hard(path: Path) -> str:
    """Arena-Hard-Auto questions ({question_id, category, cluster, turns}) or a model's answer file."""
    from janus_align.evaluate import pairwise_sets

    return f"{pairwise_sets.validate_arena_hard(path)} Arena-Hard items"


VALIDATORS: dict[str, Callable[[Path], str]] = {
    "mt_bench": validate_mt_bench,
    "alpaca_eval": validate_alpaca_eval,
    "arena_hard": validate_arena_hard,
    "realtoxicity": validate_realtoxicity,
}
