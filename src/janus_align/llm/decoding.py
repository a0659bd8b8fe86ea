"""Batched sampling that drops finished rows from the batch as it goes.

`model.generate` keeps every row of a batch until the longest one ends: on a CPU, where a
decoding step costs roughly a fixed part (reading the weights) plus a part per row, a batch
whose answers range from 40 to 384 tokens spends most of its time on rows that are already
done. This loop removes a row from the batch, its KV cache and its grammar matcher the moment
it emits a stop token or its grammar terminates, so large batches cost about the tokens
they actually produce (BENCHMARKS.md has the measured ratio). Its KV cache is allocated once
per batch and filled in place, and prompt prefixes that rows share are prefilled once
(`plan_prefill`): the prefix of the whole batch, then the prefix of each group of rows. Each
prefill pass runs in chunks of prompts of similar length (`length_chunks`), so short prompts
are not padded to the longest of the batch.

Sampling follows `generate`'s semantics for the knobs the pipeline uses: repetition penalty
(over the row's real prompt and generated tokens, never over padding), temperature, nucleus
(top-p) filtering, and greedy decoding at temperature 0. Structured output (a JSON schema or a
regex) uses one xgrammar matcher per row (the same masks `xgrammar.contrib.hf.LogitsProcessor`
applies): a stop token is allowed only where the grammar may end, and a row still inside its
grammar at `max_new_tokens` leaves unfinished, like any other row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from janus_align.config.schema import Sampling


class _PreallocatedLayer(DynamicLayer):
    """A layer's KV cache in a buffer sized for the whole generation.

    DynamicLayer appends by `torch.cat`, copying the whole cache of every layer at every step:
    at 72 rows of 300-600 tokens that copy was a third of a decoding step. Here a step writes
    its token in place; `keys`/`values` are views of the filled part, so attention is unchanged.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._rows = slice(None)  # the rows the next update writes (all but during a prefill chunk)

    def allocate(self, rows: int, heads: int, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.device = device
        self._keys = torch.empty(rows, heads, self.capacity, dim, dtype=dtype, device=device)
        self._values = torch.empty(rows, heads, self.capacity, dim, dtype=dtype, device=device)
        self.is_initialized = True

    def focus(self, rows: slice, start: int, filled: int | None = None) -> None:
        """Make the next update write rows `rows` from column `start`, attending to their columns
        before it (a prefill chunk); columns `filled` to `start` are the chunk's masked padding,
        zeroed because never written: a masked score is dropped by adding -inf, which leaves a
        NaN from uninitialized memory a NaN. `focus(slice(None), end)` ends the pass."""
        if filled is not None:
            self._keys[rows, :, filled:start] = 0
            self._values[rows, :, filled:start] = 0
        self._rows, self.length = rows, start
        self.keys, self.values = self._keys[rows, :, :start], self._values[rows, :, :start]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            rows, heads, _, dim = key_states.shape
            self.allocate(rows, heads, dim, key_states.dtype, key_states.device)
        end = self.length + key_states.shape[-2]
        self._keys[self._rows, :, self.length : end] = key_states
        self._values[self._rows, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._keys[self._rows, :, :end], self._values[self._rows, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices` (new row i = old row indices[i]), in place: only rows that change
        place are copied, and the batch shrinks to a view (see `_swap_remove`)."""
        moved = (indices != torch.arange(len(indices))).nonzero().squeeze(1)
        for buffer in (self._keys, self._values):
            if len(moved):
                buffer[moved, :, : self.length] = buffer[indices[moved], :, : self.length]  # gathers first
        self._keys, self._values = self._keys[: len(indices)], self._values[: len(indices)]
        self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

    def batch_expand(self, index: torch.Tensor) -> None:
        """New row i = old row index[i]: one filled cache row becomes several (shared prefixes)."""
        for name in ("_keys", "_values"):
            filled = getattr(self, name)[index, :, : self.length]
            buffer = filled.new_empty(filled.shape[0], filled.shape[1], self.capacity, filled.shape[3])
            buffer[:, :, : self.length] = filled
            setattr(self, name, buffer)
        self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]


def _swap_remove(keep: list[int]) -> list[int]:
    """The surviving batch rows, ordered so that as few as possible move: each row that left is
    replaced by a survivor from the end of the batch (copying every row after the first that
    left, at each departure, was a quarter of a stage's time)."""
    size = len(keep)
    survivors = set(keep)
    holes = [row for row in range(size) if row not in survivors]
    order = list(range(size))
    for hole, mover in zip(holes, (row for row in keep if row >= size)):
        order[hole] = mover
    return order


MIN_SHARED_PREFIX = 16  # tokens: a shorter shared prefix is not worth a forward pass of its own
GROUPING_GAIN = 0.8  # prefill by groups only when it computes at most this share of the flat prefill


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

    `prefix` is shared by the whole batch and `group_prefixes` by groups of rows (the four
    rubrics of one judged answer share the instruction, the answer and the reference); each is
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


PASS_COST_TOKENS = 64  # a forward pass's fixed cost (reading the weights once), in prefilled tokens


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


def _allocate(model: Any, cache: Cache, rows: int) -> None:
    config = model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    parameter = next(model.parameters())
    for layer in cache.layers:
        layer.allocate(rows, heads, dim, parameter.dtype, parameter.device)


def _focus(cache: Cache, rows: slice, start: int, filled: int | None = None) -> None:
    for layer in cache.layers:
        layer.focus(rows, start, filled)


def _expand(cache: Cache, index: torch.Tensor) -> None:
    for layer in cache.layers:
        layer.batch_expand(index)


def _prefill(
    model: Any, cache: Cache, plan: PrefillPlan, pad_id: int, chunked: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Run the plan's passes into `cache`: (attention mask over the cache, last positions, last
    logits, and the prompt each batch row holds).

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
    for rows, extends in passes:
        if not any(rows):
            holder = [holder[row] for row in extends]
            continue
        order = sorted(range(len(rows)), key=lambda row: len(rows[row]))
        index = torch.tensor([holder[extends[row]] for row in order], dtype=torch.long)
        if mask.shape[1]:
            _expand(cache, index)
        else:
            _allocate(model, cache, len(rows))
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
            _focus(cache, slice(first, end), start + width - input_ids.shape[1], filled=start)
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
        _focus(cache, slice(None), start + width)
        mask = torch.cat([mask, pass_mask], dim=1)
        holder = [0] * len(rows)
        for cache_row, row in enumerate(order):
            holder[row] = cache_row
    return mask, torch.cat(positions), torch.cat(logits), order


@dataclass
class Decoded:
    """One row's generated token ids (the stop token excluded) and whether it stopped by itself."""

    tokens: list[int]
    finished: bool


def _penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Repetition penalty as CTRL/`generate`, `penalty` per row: divide positive logits of seen
    tokens, multiply negative ones."""
    if bool((penalty == 1.0).all()):
        return logits
    penalty = penalty[:, None]
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def _nucleus(
    logits: torch.Tensor, top_p: float | torch.Tensor, tiers: Sequence[int] = (256, 4096)
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Each row's smallest set of tokens whose probability reaches `top_p` (at least one; one
    value, or one per row).

    Yields (rows, logits, token ids): for a group of rows, their candidate tokens in descending
    order, -inf outside the nucleus. Sorting the whole vocabulary of every row took ~0.4 s a step
    at 72 rows x 49k tokens, more than the model's forward pass. A nucleus nearly always lies
    within the few hundred likeliest tokens, which `topk` finds far faster; only the rows whose
    nucleus is wider go on to the next tier, and finally to the full sort, so each row's nucleus
    is exactly the full sort's.
    """
    log_total = logits.logsumexp(dim=-1, keepdim=True)
    rows = torch.arange(logits.shape[0])
    top_p = torch.as_tensor(top_p, dtype=logits.dtype).expand(len(rows))
    vocab = logits.shape[-1]
    for width in [*(w for w in tiers if w < vocab), vocab]:  # the last tier is the full sort
        ordered, order = logits[rows].topk(width, dim=-1)
        probs = (ordered - log_total[rows]).exp()  # probabilities over the whole vocabulary
        reach = top_p[rows]
        fits = probs.sum(dim=-1) >= reach if width < vocab else torch.ones(len(rows), dtype=torch.bool)
        # The mass before this token reaches top_p: outside the nucleus.
        drop = probs[fits].cumsum(dim=-1) - probs[fits] >= reach[fits, None]
        yield rows[fits], ordered[fits].masked_fill(drop, float("-inf")), order[fits]
        rows = rows[~fits]
        if not len(rows):
            return


def _choose(
    logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One token per row: greedy where the temperature is 0, else sampled from the row's nucleus
    (all tokens when its top_p is 1)."""
    chosen = logits.argmax(dim=-1)
    for selected, nucleus in ((temperature > 0) & (top_p < 1.0), True), ((temperature > 0) & (top_p >= 1.0), False):
        rows = selected.nonzero().squeeze(1)
        if not len(rows):
            continue
        scaled = logits[rows] / temperature[rows, None]
        if not nucleus:
            chosen[rows] = torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator).squeeze(1)
            continue
        for group, kept, token_ids in _nucleus(scaled, top_p[rows]):
            picked = torch.multinomial(kept.softmax(dim=-1), 1, generator=generator)
            chosen[rows[group]] = token_ids.gather(1, picked).squeeze(1)
    return chosen


@torch.inference_mode()
def sample_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    sampling: Sampling | Sequence[Sampling],
    stop_ids: Sequence[int],
    seed: int,
    grammar: Any = None,
    share_prefixes: bool = True,
    chunk_by_length: bool = True,
) -> list[Decoded]:
    """Generate up to `max_new_tokens` for each prompt (token ids); rows leave the batch when done.

    `sampling` and `grammar` (a compiled xgrammar grammar, or None) are one for all rows or one
    per row: requests of different kinds share the batch's decoding steps, whose fixed part
    (reading the weights) is most of a step's cost at a few rows.
    With `share_prefixes`, the prompt prefixes rows share are prefilled once (`plan_prefill`);
    with `chunk_by_length`, each prefill pass runs in chunks of prompts of similar length
    (`length_chunks`). The answers are the same either way.
    """
    count = len(prompts)
    vocab = model.config.vocab_size
    settings = [sampling] * count if isinstance(sampling, Sampling) else list(sampling)
    grammars = list(grammar) if isinstance(grammar, (list, tuple)) else [grammar] * count
    generator = torch.Generator().manual_seed(seed % (2**31))
    matchers: list[Any] = [None] * count
    bitmask, xgr = None, None
    if any(g is not None for g in grammars):
        import xgrammar as xgr

        matchers = [None if g is None else xgr.GrammarMatcher(g) for g in grammars]
        vocab_size = next(g for g in grammars if g is not None).tokenizer_info.vocab_size
        bitmask = xgr.allocate_token_bitmask(count, vocab_size)
    stop = set(stop_ids)
    outputs = [Decoded([], False) for _ in range(count)]
    limits = [s.max_new_tokens for s in settings]
    plan = plan_prefill(prompts) if share_prefixes else PrefillPlan.flat([], [list(ids) for ids in prompts])
    capacity = (
        len(plan.prefix)
        + max(len(ids) for ids in plan.group_prefixes)
        + max(len(ids) for ids in plan.suffixes)
        + max(limits)
    )
    cache = Cache(layers=[_PreallocatedLayer(capacity) for _ in range(model.config.num_hidden_layers)])
    mask, positions, logits, active = _prefill(
        model, cache, plan, pad_id, chunk_by_length
    )  # active: prompt of each batch row
    # Tokens each row has seen, for the repetition penalty: its prompt's tokens, never padding.
    seen = torch.zeros(count, vocab, dtype=torch.bool)
    for batch_row, row in enumerate(active):
        seen[batch_row, list(prompts[row])] = True

    def per_row(name: str) -> torch.Tensor:
        return torch.tensor([float(getattr(settings[row], name)) for row in active])

    temperature, top_p, penalty = per_row("temperature"), per_row("top_p"), per_row("repetition_penalty")
    for _ in range(max(limits)):
        logits = _penalize(logits[:, :vocab], seen, penalty)
        if bitmask is not None:
            for batch_row, row in enumerate(active):
                if matchers[row] is None:
                    bitmask[batch_row].fill_(-1)  # every token allowed
                else:
                    matchers[row].fill_next_token_bitmask(bitmask, batch_row)
            xgr.apply_token_bitmask_inplace(logits, bitmask[: len(active)])
        chosen = _choose(logits, temperature, top_p, generator)
        keep: list[int] = []
        for batch_row, (row, token) in enumerate(zip(active, chosen.tolist())):
            done = token in stop
            if not done:
                outputs[row].tokens.append(token)
                if matchers[row] is not None:
                    matchers[row].accept_token(token)
                    done = matchers[row].is_terminated()
            if done:
                outputs[row].finished = True
            elif len(outputs[row].tokens) < limits[row]:
                keep.append(batch_row)
        if not keep:
            break
        if len(keep) < len(active):
            keep = _swap_remove(keep)
            index = torch.tensor(keep, dtype=torch.long)
            cache.batch_select_indices(index)
            mask, positions, chosen, seen = mask[index], positions[index], chosen[index], seen[index]
            temperature, top_p, penalty = temperature[index], top_p[index], penalty[index]
            active = [active[i] for i in keep]
        seen[torch.arange(len(active)), chosen] = True
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        positions = positions + 1
        logits = (
            model(input_ids=chosen[:, None], attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
            .logits[:, -1, :]
            .float()
        )
    return outputs
