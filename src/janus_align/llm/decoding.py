"""The decoding loop: batched sampling that drops finished rows from the batch as it goes.

`model.generate` keeps every row of a batch until the longest one ends: on a CPU, where a
decoding step costs roughly a fixed part (reading the weights) plus a part per row, a batch
whose answers range from 40 to 384 tokens spends most of its time on rows that are already
done. `sample_batch` removes a row from the batch, its KV cache and its grammar matcher the
moment it emits a stop token or its grammar terminates, so large batches cost about the tokens
they actually produce (BENCHMARKS.md has the measured ratio). The parts it drives are modules
of their own: the KV cache allocated once per batch (llm/kv_cache.py), prefill planning of
shared prefixes and length chunks (llm/prefill.py), and the choice of each row's token from
its own random stream (llm/sampling.py).

Structured output (a JSON schema or a regex) uses one xgrammar matcher per row (the same masks
`xgrammar.contrib.hf.LogitsProcessor` applies): a stop token is allowed only where the grammar
may end, and a row still inside its grammar at `max_new_tokens` leaves unfinished, like any
other row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from janus_align.config.schema import Sampling
from janus_align.llm.kv_cache import PreallocatedCache, swap_remove_order
from janus_align.llm.prefill import PrefillPlan, plan_prefill, prefill
from janus_align.llm.sampling import choose, penalize, row_generators

# Bump whenever a change to decoding (this loop, prefill, sampling, the KV cache) can change
# the tokens a row gets: it is part of the transformers backend's model id, hence of every
# request cache key, so answers computed by older code are never served again.
# 2: each row samples from its own random stream (inverse CDF), not from one stream per batch.
DECODING_VERSION = 2


@dataclass
class Decoded:
    """One row's generated token ids (the stop token excluded) and whether it stopped by itself."""

    tokens: list[int]
    finished: bool


RowCallback = Callable[[int, Decoded], None]
"""Called with (prompt index, its `Decoded`) the moment a row leaves the batch, done for good."""


@torch.inference_mode()
def sample_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    sampling: Sampling | Sequence[Sampling],
    stop_ids: Sequence[int],
    seeds: int | Sequence[int],
    grammar: Any = None,
    share_prefixes: bool = True,
    chunk_by_length: bool = True,
    on_row: RowCallback | None = None,
) -> list[Decoded]:
    """Generate up to `max_new_tokens` for each prompt (token ids); rows leave the batch when done.

    `sampling`, `seeds` and `grammar` (a compiled xgrammar grammar, or None) are one for all
    rows or one per row: requests of different kinds share the batch's decoding steps, whose
    fixed part (reading the weights) is most of a step's cost at a few rows. Each sampled row
    draws from its own stream, seeded with its seed, so what it gets does not depend on the
    other rows of the batch (up to float noise: llm/sampling.py).
    With `share_prefixes`, the prompt prefixes rows share are prefilled once (`plan_prefill`);
    with `chunk_by_length`, each prefill pass runs in chunks of prompts of similar length
    (`length_chunks`). The answers are the same either way.
    `on_row` hears of each row as it leaves the batch (stopped, or at its `max_new_tokens`), so
    a caller can hand out and count answers while the longer rows still decode.
    """
    count = len(prompts)
    vocab = model.config.vocab_size
    settings = [sampling] * count if isinstance(sampling, Sampling) else list(sampling)
    grammars = list(grammar) if isinstance(grammar, (list, tuple)) else [grammar] * count
    streams = row_generators([seeds] * count if isinstance(seeds, int) else seeds)
    matchers: list[Any] = [None] * count
    bitmask: torch.Tensor | None = None
    apply_bitmask: Any = None
    if any(g is not None for g in grammars):
        import xgrammar

        matchers = [None if g is None else xgrammar.GrammarMatcher(g) for g in grammars]
        vocab_size = next(g for g in grammars if g is not None).tokenizer_info.vocab_size
        bitmask = xgrammar.allocate_token_bitmask(count, vocab_size)
        apply_bitmask = xgrammar.apply_token_bitmask_inplace
    stop = set(stop_ids)
    outputs = [Decoded([], False) for _ in range(count)]
    limits = [s.max_new_tokens for s in settings]
    plan = plan_prefill(prompts) if share_prefixes else PrefillPlan.flat([], [list(ids) for ids in prompts])
    cache = PreallocatedCache(model, plan.longest + max(limits))
    prefilled = prefill(model, cache, plan, pad_id, chunk_by_length)
    mask, positions, logits = prefilled.mask, prefilled.positions, prefilled.logits
    active = prefilled.prompt_of  # the prompt of each batch row
    # Tokens each row has seen, for the repetition penalty: its prompt's tokens, never padding.
    seen = torch.zeros(count, vocab, dtype=torch.bool)
    for batch_row, row in enumerate(active):
        seen[batch_row, list(prompts[row])] = True

    def per_row(name: str) -> torch.Tensor:
        return torch.tensor([float(getattr(settings[row], name)) for row in active])

    temperature, top_p, penalty = per_row("temperature"), per_row("top_p"), per_row("repetition_penalty")
    for _ in range(max(limits)):
        logits = penalize(logits[:, :vocab], seen, penalty)
        if bitmask is not None:
            for batch_row, row in enumerate(active):
                if matchers[row] is None:
                    bitmask[batch_row].fill_(-1)  # every token allowed
                else:
                    matchers[row].fill_next_token_bitmask(bitmask, batch_row)
            apply_bitmask(logits, bitmask[: len(active)])
        chosen = choose(logits, temperature, top_p, [streams[row] for row in active])
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
                continue
            if on_row is not None:
                on_row(row, outputs[row])
        if not keep:
            break
        if len(keep) < len(active):
            keep = swap_remove_order(keep)
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
