"""Prefill planning: prompt prefixes that rows share are computed once, in chunks of similar length.

Prefill is most of the tokens the teacher processes. `plan_prefill` finds, from the tokens
alone, the prefix of the whole batch and then the prefix of each group of rows (the judge's four
rubric prompts of one answer share the instruction, the answer and the reference); `prefill`
runs the plan into the batch's KV cache, each pass in chunks of prompts of similar length
(`length_chunks`), so short prompts are not padded to the longest of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from janus_align.llm.kv_cache import PreallocatedCache

MIN_SHARED_PREFIX = 16  # tokens: a shorter shared prefix is not worth a forward pass of its own
GROUPING_GAIN = 0.8  # prefill by groups only when it computes at most this share of the flat prefill
PASS_COST_TOKENS = 64  # a forward pass's fixed cost (reading the weights once), in prefilled tokens


def _common_length(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    length = 0
    while length < limit and a[length] == b[length]:
        length += 1
    return length


def shared_prefix(prompts: Sequence[Sequence[int]], min_tokens: int = MIN_SHARED_PREFIX) -> list[int]:
    """The tokens all prompts start with (each keeps at least one token of its own); [] under `min_tokens`."""
    if len(prompts) < 2:
        return []
    length = min(len(ids) for ids in prompts) - 1
    for ids in prompts[1:]:
        length = _common_length(prompts[0], ids, length)
    return list(prompts[0][:length]) if length >= min_tokens else []


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token rows padded on the left to the longest."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + list(ids) for ids in rows], dtype=torch.long)
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows], dtype=torch.long)
    return input_ids, attention_mask


@dataclass(frozen=True)
class PrefillPlan:
    """Each prompt as `prefix` + `group_prefixes[group_of[row]]` + `suffixes[row]`.

    `prefix` is shared by the whole batch and `group_prefixes` by groups of rows; each is
    prefilled once and its KV cache copied to the rows that share it. No groups: one empty
    group prefix for every row.
    """

    prefix: list[int]
    group_prefixes: list[list[int]]
    group_of: list[int]
    suffixes: list[list[int]]

    @classmethod
    def flat(cls, prefix: list[int], suffixes: list[list[int]]) -> PrefillPlan:
        return cls(prefix, [[]], [0] * len(suffixes), suffixes)

    @property
    def longest(self) -> int:
        """The most cache columns a prompt takes under this plan (padding included)."""
        return len(self.prefix) + max(len(ids) for ids in self.group_prefixes) + max(len(ids) for ids in self.suffixes)


def _chunking(lengths: Sequence[int], pass_cost: int) -> tuple[int, list[tuple[int, int]]]:
    """(cost, chunks) of the cheapest split of rows sorted by length (`length_chunks`)."""
    best = [0] * (len(lengths) + 1)  # best[end]: the cost of rows [0, end)
    cut = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        best[end], cut[end] = min(
            (best[start] + (end - start) * lengths[end - 1] + pass_cost, start) for start in range(end)
        )
    chunks = []
    end = len(lengths)
    while end:
        chunks.append((cut[end], end))
        end = cut[end]
    return best[-1], chunks[::-1]


def length_chunks(lengths: Sequence[int], pass_cost: int = PASS_COST_TOKENS) -> list[tuple[int, int]]:
    """Split rows sorted by length into consecutive chunks [start, end), each prefilled as one pass
    padded to its longest row, so as to compute the fewest tokens (padding counts, and each pass
    costs `pass_cost`). One pass for a batch whose prompts ran from 30 to 270 tokens computed
    twice the tokens of its prompts; here a chunk's rows are of similar length."""
    return _chunking(lengths, pass_cost)[1]


def prefill_cost(lengths: Sequence[int]) -> int:
    """Tokens computed to prefill rows of these lengths in `length_chunks`, pass costs included."""
    return _chunking(sorted(lengths), PASS_COST_TOKENS)[0]


def plan_prefill(prompts: Sequence[Sequence[int]], min_tokens: int = MIN_SHARED_PREFIX) -> PrefillPlan:
    """How to prefill `prompts` computing as few tokens as possible (padding counts as computed).

    After the batch's shared prefix, rows sorted by their tokens fall into groups whose common
    prefix is at least `min_tokens` long (a row alone is a group of one: all but its last token).
    Groups are used only when the group pass plus the suffix pass compute at most GROUPING_GAIN
    of one pass over the whole prompts (`prefill_cost`).
    """
    prefix = shared_prefix(prompts, min_tokens)
    rest = [list(ids[len(prefix) :]) for ids in prompts]
    flat = PrefillPlan.flat(prefix, rest)
    members: list[list[int]] = []
    common: list[int] = []  # each group's prefix length
    for row in sorted(range(len(rest)), key=lambda i: rest[i]):
        if members:
            first = rest[members[-1][0]]
            length = _common_length(first, rest[row], min(common[-1], len(rest[row]) - 1))
            if length >= min_tokens:
                members[-1].append(row)
                common[-1] = length
                continue
        members.append([row])
        common.append(len(rest[row]) - 1)
    if len(members) == len(rest) or min(common) == 0:
        return flat
    group_of = [0] * len(rest)
    for group, rows in enumerate(members):
        for row in rows:
            group_of[row] = group
    suffix_lengths = [len(ids) - common[group_of[row]] for row, ids in enumerate(rest)]
    if prefill_cost(common) + prefill_cost(suffix_lengths) > GROUPING_GAIN * prefill_cost(list(map(len, rest))):
        return flat
    return PrefillPlan(
        prefix,
        [rest[rows[0]][:length] for rows, length in zip(members, common)],
        group_of,
        [ids[common[group_of[row]] :] for row, ids in enumerate(rest)],
    )


@dataclass
class Prefilled:
    """What a prefill leaves for decoding, one entry per batch row: the attention mask over the
    cache, each row's last position and last logits (float32), and the prompt the row holds."""

    mask: torch.Tensor
    positions: torch.Tensor
    logits: torch.Tensor
    prompt_of: list[int]


def prefill(model: Any, cache: PreallocatedCache, plan: PrefillPlan, pad_id: int, chunked: bool = True) -> Prefilled:
    """Run the plan's passes into `cache`.

    Three passes, each skipped when it has no tokens: the batch prefix (one row), the group
    prefixes (one row per group), the suffixes (one row per prompt). Before a pass, the cache
    rows so far are copied to the rows that extend them, in order of length, and the pass runs
    in chunks of rows of similar length (`length_chunks`; one chunk unless `chunked`). Padding
    sits before each chunk's tokens (between the shared parts and a row's own), masked out, with
    positions counted over real tokens only.
    """
    mask = torch.ones(1, 0, dtype=torch.long)  # one row, nothing cached yet
    holder = [0]  # the cache row holding each row of the last pass
    passes = (
        ([plan.prefix], [0]),
        (plan.group_prefixes, [0] * len(plan.group_prefixes)),
        (plan.suffixes, plan.group_of),
    )
    positions: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    order: list[int] = []
    for rows, extends in passes:
        if not any(rows):
            holder = [holder[row] for row in extends]
            continue
        order = sorted(range(len(rows)), key=lambda row: len(rows[row]))
        index = torch.tensor([holder[extends[row]] for row in order], dtype=torch.long)
        if mask.shape[1]:
            cache.expand(index)
        else:
            cache.allocate(len(rows))
        mask = mask[index]
        start, width = mask.shape[1], max(len(ids) for ids in rows)
        pass_mask = torch.zeros(len(rows), width, dtype=torch.long)
        positions, logits = [], []
        lengths = [len(rows[row]) for row in order]
        for first, end in length_chunks(lengths) if chunked else [(0, len(rows))]:
            input_ids, chunk_mask = left_pad([rows[row] for row in order[first:end]], pad_id)
            pass_mask[first:end, width - input_ids.shape[1] :] = chunk_mask
            chunk_mask = torch.cat([mask[first:end], pass_mask[first:end]], dim=1)
            chunk_positions = (chunk_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
            cache.focus(slice(first, end), start + width - input_ids.shape[1], filled=start)
            output = model(
                input_ids=input_ids,
                attention_mask=chunk_mask,
                position_ids=chunk_positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            positions.append(chunk_positions[:, -1:])
            logits.append(output.logits[:, -1, :].float())
        cache.focus(slice(None), start + width)
        mask = torch.cat([mask, pass_mask], dim=1)
        holder = [0] * len(rows)
        for cache_row, row in enumerate(order):
            holder[row] = cache_row
    return Prefilled(mask, torch.cat(positions), torch.cat(logits), order)
