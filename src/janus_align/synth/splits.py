"""The five released splits: their exact schemas (PAPER.md, "Released splits and schemas") and
how they are built from the gold responses.

    sft        main_source, original_source, preference_set, system, prompt, output  (every set)
    sft_small  the same columns, one system message per instruction
    dpo, orpo  main_source, original_source, system, prompt, chosen, rejected
    rm         input, chosen, rejected  (train + a held-out test part)

Only complete instructions enter the splits: `sets_per_instruction` responses whose system
messages all differ (a set lost to a reject upstream, or two identical system messages, drop
the instruction everywhere, counted), so sft always holds exactly that many distinct system
messages per instruction of sft_small.

Per instruction one preference set is picked with a seed (`pick_pair`): its system message is
the one of sft_small, dpo, orpo and rm; its gold response is "chosen"; the gold response
written for one of the other sets (seeded) is "rejected", presented under the chosen system
message. `chosen`/`rejected` in dpo/orpo are conversations [system, user, assistant]: the
official columns and types, with the system turn included so that TRL, which extracts the
prompt from the conversations and ignores the `system` column, trains with the system
message (docs/data.md has the reasoning). The answer is always the last (assistant) turn.

Beside each official file, a TRL-native one (`TRL_SCHEMAS`, paths.trl_file) that TRL's trainers
read as they are, system message inside the prompt:

    sft, sft_small     prompt [system, user], completion [assistant]        (SFTTrainer)
    dpo, orpo, rm      prompt [system, user], chosen [assistant], rejected [assistant]
                       (DPOTrainer, ORPOTrainer, RewardTrainer: explicit-prompt preference format)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from janus_align.synth.rows import ResponseRow

_TEXT = pa.string()
PREFERENCE_ENTRY = pa.struct(
    [("dimension", _TEXT), ("subdimension", _TEXT), ("preference", _TEXT), ("description", _TEXT)]
)
MESSAGE = pa.struct([("content", _TEXT), ("role", _TEXT)])
_SFT = pa.schema(
    [
        ("main_source", _TEXT),
        ("original_source", _TEXT),
        ("preference_set", pa.list_(PREFERENCE_ENTRY)),
        ("system", _TEXT),
        ("prompt", _TEXT),
        ("output", _TEXT),
    ]
)
_PAIRS = pa.schema(
    [
        ("main_source", _TEXT),
        ("original_source", _TEXT),
        ("system", _TEXT),
        ("prompt", _TEXT),
        ("chosen", pa.list_(MESSAGE)),
        ("rejected", pa.list_(MESSAGE)),
    ]
)
_CONVERSATION = pa.list_(MESSAGE)
TRL_SFT = pa.schema([("prompt", _CONVERSATION), ("completion", _CONVERSATION)])
TRL_PREFERENCE = pa.schema([("prompt", _CONVERSATION), ("chosen", _CONVERSATION), ("rejected", _CONVERSATION)])
TRL_SCHEMAS: dict[str, pa.Schema] = {
    "sft": TRL_SFT,
    "sft_small": TRL_SFT,
    "dpo": TRL_PREFERENCE,
    "orpo": TRL_PREFERENCE,
    "rm": TRL_PREFERENCE,
}
SCHEMAS: dict[str, pa.Schema] = {
    "sft": _SFT,
    "sft_small": _SFT,
    "dpo": _PAIRS,
    "orpo": _PAIRS,
    "rm": pa.schema([("input", _TEXT), ("chosen", _TEXT), ("rejected", _TEXT)]),
}


@dataclass
class Pair:
    """The picked system message of one instruction, its response, and the rejected response."""

    chosen: ResponseRow
    rejected: ResponseRow | None


def group_by_instruction(rows: Sequence[ResponseRow]) -> list[list[ResponseRow]]:
    """Rows grouped per instruction (first-seen order), each group sorted by set index."""
    groups: dict[str, list[ResponseRow]] = {}
    for row in rows:
        groups.setdefault(row.instruction_id, []).append(row)
    return [sorted(group, key=lambda r: r.set_index) for group in groups.values()]


def _collapsed(text: str) -> str:
    return " ".join(text.split())


def is_complete(group: Sequence[ResponseRow], sets_per_instruction: int) -> bool:
    """All sets of the instruction made it, with pairwise different system messages."""
    return len(group) == sets_per_instruction and len({_collapsed(r.system) for r in group}) == len(group)


def pick_pair(group: Sequence[ResponseRow], seed: int) -> Pair:
    """Seeded per instruction id, so the pick of one instruction never depends on the others.
    The rejected response must differ from the chosen one (whitespace aside)."""
    rng = random.Random(f"{seed}:assemble:{group[0].instruction_id}")
    chosen = rng.choice(list(group))
    others = [r for r in group if r.set_index != chosen.set_index and _collapsed(r.output) != _collapsed(chosen.output)]
    return Pair(chosen, rng.choice(others) if others else None)


def prompt_turns(system: str, prompt: str) -> list[dict[str, str]]:
    """The system and user turns: what the model is asked."""
    return [{"content": system, "role": "system"}, {"content": prompt, "role": "user"}]


def answer_turns(answer: str) -> list[dict[str, str]]:
    return [{"content": answer, "role": "assistant"}]


def conversation(system: str, prompt: str, answer: str) -> list[dict[str, str]]:
    return prompt_turns(system, prompt) + answer_turns(answer)


def rm_input(system: str, prompt: str) -> str:
    """The RM split's `input`: the system message, then the instruction (as the released data)."""
    return f"{system}\n{prompt}"


def sft_row(row: ResponseRow) -> dict[str, Any]:
    return {
        "main_source": row.main_source,
        "original_source": row.original_source,
        "preference_set": [entry.model_dump() for entry in row.preference_set],
        "system": row.system,
        "prompt": row.prompt,
        "output": row.output,
    }


def pair_row(pair: Pair) -> dict[str, Any]:
    chosen, rejected = pair.chosen, pair.rejected
    assert rejected is not None
    return {
        "main_source": chosen.main_source,
        "original_source": chosen.original_source,
        "system": chosen.system,
        "prompt": chosen.prompt,
        "chosen": conversation(chosen.system, chosen.prompt, chosen.output),
        "rejected": conversation(chosen.system, chosen.prompt, rejected.output),
    }


def trl_sft_row(row: dict[str, Any]) -> dict[str, Any]:
    """An official SFT row in TRL's conversational prompt/completion format."""
    return {"prompt": prompt_turns(row["system"], row["prompt"]), "completion": answer_turns(row["output"])}


def trl_preference_row(pair: Pair) -> dict[str, Any]:
    """A pair in TRL's explicit-prompt conversational preference format (DPO, ORPO, RM)."""
    assert pair.rejected is not None
    return {
        "prompt": prompt_turns(pair.chosen.system, pair.chosen.prompt),
        "chosen": answer_turns(pair.chosen.output),
        "rejected": answer_turns(pair.rejected.output),
    }


def rm_row(pair: Pair) -> dict[str, Any]:
    assert pair.rejected is not None
    return {
        "input": rm_input(pair.chosen.system, pair.chosen.prompt),
        "chosen": pair.chosen.output,
        "rejected": pair.rejected.output,
    }


def held_out(count: int, fraction: float, seed: int) -> set[int]:
    """Indices of the RM test part: round(count * fraction), at least one when the fraction is
    above zero, never all of them."""
    if fraction <= 0 or count < 2:
        return set()
    size = min(count - 1, max(1, round(count * fraction)))
    order = list(range(count))
    random.Random(f"{seed}:rm-test").shuffle(order)
    return set(order[:size])


@dataclass
class Assembled:
    """The rows of every split ("rm_test": the RM held-out part) and what they were built from;
    `trl` holds the same rows, in the same order, in the TRL-native formats."""

    splits: dict[str, list[dict[str, Any]]]
    trl: dict[str, list[dict[str, Any]]]
    groups: list[list[ResponseRow]]  # the complete instructions, each with all its sets
    picks: list[Pair]  # one per complete instruction
    incomplete: int  # instructions left out

    def preference_sets(self, split: str) -> list[list[Any]]:
        """The preference sets behind a split's rows (the chosen set for pair splits)."""
        if split == "sft":
            return [r.preference_set for group in self.groups for r in group]
        if split == "sft_small":
            return [p.chosen.preference_set for p in self.picks]
        return [p.chosen.preference_set for p in self.picks if p.rejected is not None]


def build_splits(
    rows: Sequence[ResponseRow], seed: int, rm_test_fraction: float, sets_per_instruction: int
) -> Assembled:
    """Every split from the gold responses of the complete instructions."""
    all_groups = group_by_instruction(rows)
    groups = [g for g in all_groups if is_complete(g, sets_per_instruction)]
    picks = [pick_pair(group, seed) for group in groups]
    pairs = [p for p in picks if p.rejected is not None]
    test = held_out(len(pairs), rm_test_fraction, seed)
    rm_rows = [rm_row(p) for p in pairs]
    trl_pairs = [trl_preference_row(p) for p in pairs]
    splits = {
        "sft": [sft_row(r) for group in groups for r in group],
        "sft_small": [sft_row(p.chosen) for p in picks],
        "dpo": [pair_row(p) for p in pairs],
        "orpo": [pair_row(p) for p in pairs],
        "rm": [r for i, r in enumerate(rm_rows) if i not in test],
        "rm_test": [r for i, r in enumerate(rm_rows) if i in test],
    }
    trl = {
        "sft": [trl_sft_row(r) for r in splits["sft"]],
        "sft_small": [trl_sft_row(r) for r in splits["sft_small"]],
        "dpo": trl_pairs,
        "orpo": trl_pairs,
        "rm": [r for i, r in enumerate(trl_pairs) if i not in test],
        "rm_test": [r for i, r in enumerate(trl_pairs) if i in test],
    }
    return Assembled(splits, trl, groups, picks, len(all_groups) - len(groups))


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    """Rows in exactly `schema` (column order and types), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), partial)
    partial.replace(path)
