"""Load a collection split (official schema) and turn it into the dataset format TRL trains on.

Split folders hold parquet (or JSONL/JSON) files in the official Hugging Face schemas
(PAPER.md, "Released splits and schemas"); files whose name starts with `test` are the split's
own held-out part (the RM split has one). Only the text columns a recipe needs are required,
so official files with extra columns load too.

Every (system, prompt) pair goes through `janus_align.models.prompt_format`, the one place
that decides what the model reads, so training sees exactly what inference will send:
- `chat_template`: conversational TRL rows, the system turn folded into the user turn when the
  template has no system role (`to_messages`);
- `mistral_inst`: the literal `[INST] {system}\\n{prompt} [/INST] ` text as the prompt and the
  answer as the completion (TRL appends EOS; the tokenizer adds BOS, as Axolotl did; the space
  after `[/INST]` travels with the answer, see `literal_prompt`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

from janus_align import paths
from janus_align.errors import JanusError
from janus_align.models.prompt_format import PromptFormat, mistral_inst, render_prompt, to_messages
from janus_align.records import RecordError, iter_located

SplitName = Literal["sft", "sft_small", "dpo", "orpo", "rm"]
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
# The text columns each split must carry (the official schemas have more; those are kept for lineage).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "sft": ("system", "prompt", "output"),
    "sft_small": ("system", "prompt", "output"),
    "dpo": ("system", "prompt", "chosen", "rejected"),
    "orpo": ("system", "prompt", "chosen", "rejected"),
    "rm": ("input", "chosen", "rejected"),
}


class SplitError(JanusError, ValueError):
    """A collection split is missing or malformed; the message names the file, row and column."""


@dataclass
class SplitRows:
    """The rows of one split, divided into the rows to train on and the held-out rows."""

    name: str
    directory: Path
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def split_files(name: str, root: Path = paths.COLLECTION) -> tuple[list[Path], list[Path]]:
    """(train files, test files) of a split folder; raises SplitError when it has no data file."""
    directory = root / name
    if not directory.is_dir():
        raise SplitError(f"{directory}: split folder not found (run the assemble stage first)")
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and paths.TRL_SUBDIR not in p.relative_to(directory).parts
    )
    if not files:
        raise SplitError(f"{directory}: no {'/'.join(DATA_SUFFIXES)} file in the split folder")
    test = [p for p in files if p.name.lower().startswith("test")]
    train = [p for p in files if p not in test]
    if not train:
        raise SplitError(f"{directory}: only test files; the split has nothing to train on")
    return train, test


def answer_text(value: Any, where: str) -> str:
    """The assistant's answer from an official `chosen`/`rejected` value.

    The DPO/ORPO splits store a conversation ([user, assistant] messages): the last assistant
    message is the answer. Plain strings (RM split, older layouts) are the answer themselves.
    """
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if isinstance(value, list):
        answers = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
        if answers and isinstance(answers[-1], str):
            return answers[-1]
    raise SplitError(f"{where}: expected a string or a list of {{content, role}} messages with an assistant turn")


def _read_rows(name: str, files: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in files:
        try:
            for located, row in iter_located(path):
                for column in REQUIRED_COLUMNS[name]:
                    where = f"{located}: column {column!r}"
                    if column not in row or row[column] is None:
                        raise SplitError(f"{where} is missing")
                    text = answer_text(row[column], where) if column in ("chosen", "rejected") else row[column]
                    if not isinstance(text, str):
                        raise SplitError(f"{where} must be a string, got {type(text).__name__}")
                    # An empty system message is legal (the paper trains some without one); the rest is not.
                    if not text.strip() and column != "system":
                        raise SplitError(f"{where} is empty")
                rows.append(row)
        except RecordError as exc:
            raise SplitError(str(exc)) from None
    return rows


def load_split(name: str, eval_fraction: float, seed: int, root: Path = paths.COLLECTION) -> SplitRows:
    """Rows of a split, with held-out rows for evaluation.

    The split's own test files are the held-out rows when it has them (RM); otherwise a seeded
    `eval_fraction` of its rows is held out (at least one when the fraction is above zero), the
    same rows for every recipe and trial reading this split with this seed.
    """
    if name not in REQUIRED_COLUMNS:
        raise SplitError(f"unknown split {name!r}; known: {sorted(REQUIRED_COLUMNS)}")
    train_files, test_files = split_files(name, root)
    rows = _read_rows(name, train_files)
    if not rows:
        raise SplitError(f"{root / name}: the split has no rows")
    held_out = _read_rows(name, test_files) if test_files else []
    if not held_out and eval_fraction > 0 and len(rows) > 1:
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        count = max(1, round(len(rows) * eval_fraction))
        chosen = set(order[:count])
        held_out = [row for i, row in enumerate(rows) if i in chosen]
        rows = [row for i, row in enumerate(rows) if i not in chosen]
    return SplitRows(name, root / name, rows, held_out, train_files + test_files)


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def literal_prompt(system: str | None, prompt: str, *answers: str) -> tuple[str, ...]:
    """The `[INST]` prompt and its answers, with the space after `[/INST]` moved into the answers.

    A BPE tokenizer merges that space into the answer's first token (" Hello"), so tokenized
    alone the prompt ends in a lone-space token the joined sequence never has. Moving the space
    makes the prompt's tokens a prefix of prompt+answer: the training sequence is one clean
    encoding of the text, as the paper's inference (vLLM strips the prompt) reads it.
    """
    text = mistral_inst(system, prompt)
    trimmed = text.rstrip(" ")
    gap = text[len(trimmed) :]
    return (trimmed, *(gap + answer for answer in answers))


def sft_example(
    row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, prompt_format: PromptFormat, messages_format: bool
) -> dict[str, Any]:
    """One SFT row in TRL's format.

    `messages_format` (chat template with generation markers): {"messages": [system?, user,
    assistant]} trained with `assistant_only_loss`; otherwise a prompt/completion row, where
    TRL's completion-only loss masks the prompt.
    """
    system, prompt, output = row["system"] or None, row["prompt"], row["output"]
    if prompt_format == "mistral_inst":
        text, completion = literal_prompt(system, prompt, output)
        return {"prompt": text, "completion": completion}
    turns = to_messages(system, prompt, tokenizer)
    if messages_format:
        return {"messages": turns + _assistant(output)}
    return {"prompt": turns, "completion": _assistant(output)}


def preference_example(
    row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, prompt_format: PromptFormat, as_text: bool = False
) -> dict[str, Any]:
    """One DPO/ORPO/RM row: {"prompt", "chosen", "rejected"}, conversational or literal text.

    The RM split has no separate system column: its `input` (system message + instruction) is
    the user turn, as OpenRLHF's `[INST] {} [/INST] ` input template read it.

    `as_text` renders the prompt with `render_prompt` and ends each answer with EOS, for
    trainers that take text only (ORPO: given conversational rows it renders the chat
    template's end-of-turn newline and then appends a second EOS).
    """
    if "input" in row:
        system, prompt = None, row["input"]
    else:
        system, prompt = row["system"] or None, row["prompt"]
    chosen, rejected = answer_text(row["chosen"], "chosen"), answer_text(row["rejected"], "rejected")
    if prompt_format == "mistral_inst":
        text, chosen, rejected = literal_prompt(system, prompt, chosen, rejected)
    elif as_text:
        text = render_prompt(tokenizer, system, prompt, prompt_format)
    if as_text or prompt_format == "mistral_inst":
        eos = tokenizer.eos_token if as_text else ""
        return {"prompt": text, "chosen": chosen + eos, "rejected": rejected + eos}
    return {
        "prompt": to_messages(system, prompt, tokenizer),
        "chosen": _assistant(chosen),
        "rejected": _assistant(rejected),
    }


def to_dataset(
    rows: list[dict[str, Any]],
    kind: Literal["sft", "preference"],
    tokenizer: PreTrainedTokenizerBase,
    prompt_format: PromptFormat,
    messages_format: bool = True,
    as_text: bool = False,
) -> Any:
    """A `datasets.Dataset` of TRL rows (None for no rows); flags as in `sft_example`/`preference_example`.

    The trainers' own passes over it (tokenize, build labels, truncate: `Dataset.map`) run in
    a second on these sizes and would print a bar each; training's progress is the trainer's.
    """
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    if not rows:
        return None
    if kind == "sft":
        examples = [sft_example(r, tokenizer, prompt_format, messages_format) for r in rows]
    else:
        examples = [preference_example(r, tokenizer, prompt_format, as_text) for r in rows]
    return Dataset.from_list(examples)


def to_datasets(
    split: SplitRows,
    kind: Literal["sft", "preference"],
    tokenizer: PreTrainedTokenizerBase,
    prompt_format: PromptFormat,
    **flags: bool,
) -> tuple[Any, Any]:
    """(train, eval) datasets of a split, as `to_dataset` (eval is None without held-out rows)."""
    return tuple(to_dataset(rows, kind, tokenizer, prompt_format, **flags) for rows in (split.train, split.eval))


def frame(rows: list[dict[str, Any]]) -> Any:
    """The rows as a pandas DataFrame, for `mlflow.data.from_pandas` (nested values as JSON text)."""
    import json

    import pandas as pd

    def flat(value: Any) -> Any:
        if hasattr(value, "tolist"):
            value = value.tolist()
        return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value

    return pd.DataFrame([{k: flat(v) for k, v in row.items()} for row in rows])
