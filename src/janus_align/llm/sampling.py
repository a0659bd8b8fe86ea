"""Choosing each row's next token: repetition penalty, temperature, nucleus (top-p), and the
row's own random stream.

Semantics follow `generate` for the knobs the pipeline uses: repetition penalty (over the row's
real prompt and generated tokens), temperature, nucleus filtering, greedy at temperature 0.

A sampled row's token depends only on its logits and its own random stream, never on the rows
beside it: each sampled row owns a `torch.Generator` seeded from its request
(`ChatRequest.stream_seed`) and draws one uniform from it per step, whatever the batch; greedy
rows draw nothing. The uniform picks a token by inverse CDF over the row's nucleus taken in
token-id order, the cumulative sums in float64. A row's logits are not bit-identical across
batch compositions on CPU (the matrix and attention kernels' blocking depends on the batch
shape and padding: ~2e-7 apart in float32), so this is what keeps such noise from moving a
draw: token-id order does not depend on how near-ties sort, and float64 sums keep a 45k-token
nucleus's edge and boundaries where the exact values put them; the draw moves only when the
noise moves a boundary across the uniform or a token across the nucleus edge (none in 41
steps x 100 draws on the ci model, docs/decisions.md). Gumbel-max (one draw per vocabulary
token) is as exact and more robust at the edge, but its noise cost ~150 ms a step at 72 rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def row_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One random stream per row, seeded from the row's own request (`ChatRequest.stream_seed`)."""
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def inverse_cdf(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Per row, the column whose share of softmax(logits) covers `uniforms[row]` (in [0, 1)),
    columns taken in order; -inf columns are never picked. Sums in float64 (see the module)."""
    weights = (logits - logits.max(dim=-1, keepdim=True).values).exp().double()
    cdf = weights.cumsum(dim=-1)
    picked = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None], right=True).squeeze(1)
    return picked.clamp(max=cdf.shape[-1] - 1)


def penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Repetition penalty as CTRL/`generate`, `penalty` per row: divide positive logits of seen
    tokens, multiply negative ones."""
    if bool((penalty == 1.0).all()):
        return logits
    penalty = penalty[:, None]
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def nucleus(
    logits: torch.Tensor, top_p: float | torch.Tensor, tiers: Sequence[int] = (256, 4096)
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Each row's smallest set of tokens whose probability reaches `top_p` (at least one; one
    value, or one per row).

    Yields (rows, logits, token ids): for a group of rows, their candidate tokens in descending
    order, -inf outside the nucleus. Sorting the whole vocabulary of every row took ~0.4 s a step
    at 72 rows x 49k tokens, more than the model's forward pass. A nucleus nearly always lies
    within the few hundred likeliest tokens, which `topk` finds far faster; only the rows whose
    nucleus is wider go on to the next tier, and finally to the full sort, so each row's nucleus
    is exactly the full sort's. Probabilities are exponentiated in float32 but summed and
    normalized in float64: a float32 logsumexp rounds log(total) by ~1e-6, which shifts every
    probability alike and moved the edge of the ci model's 45k-token nucleus for 1.6 % of draws
    between batch compositions (a float64 exp over the vocabulary cost ~140 ms a step at 72 rows).
    """
    peak = logits.max(dim=-1, keepdim=True).values
    total = (logits - peak).exp().double().sum(dim=-1, keepdim=True)
    rows = torch.arange(logits.shape[0])
    reach_of = torch.as_tensor(top_p, dtype=torch.float64).expand(len(rows))
    vocab = logits.shape[-1]
    for width in [*(w for w in tiers if w < vocab), vocab]:  # the last tier is the full sort
        ordered, order = logits[rows].topk(width, dim=-1)
        probs = (ordered - peak[rows]).exp().double() / total[rows]  # over the whole vocabulary
        reach = reach_of[rows]
        fits = probs.sum(dim=-1) >= reach if width < vocab else torch.ones(len(rows), dtype=torch.bool)
        # The mass before this token reaches top_p: outside the nucleus.
        drop = probs[fits].cumsum(dim=-1) - probs[fits] >= reach[fits, None]
        yield rows[fits], ordered[fits].masked_fill(drop, float("-inf")), order[fits]
        rows = rows[~fits]
        if not len(rows):
            return


def choose(
    logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One token per row: greedy where the temperature is 0, else drawn from the row's nucleus
    (all tokens when its top_p is 1) with one uniform from `generators[row]`, the row's own."""
    chosen = logits.argmax(dim=-1)
    rows = (temperature > 0).nonzero().squeeze(1)
    if not len(rows):
        return chosen
    uniforms = torch.cat([torch.rand(1, generator=generators[row], dtype=torch.float64) for row in rows.tolist()])
    scaled = logits[rows] / temperature[rows, None]
    whole = top_p[rows] >= 1.0
    if bool(whole.any()):
        chosen[rows[whole]] = inverse_cdf(scaled[whole], uniforms[whole])  # columns are token ids
    narrow = (~whole).nonzero().squeeze(1)
    if len(narrow):
        for group, kept, token_ids in nucleus(scaled[narrow], top_p[rows[narrow]]):
            members = narrow[group]
            by_id, order = token_ids.sort(dim=-1)
            picked = inverse_cdf(kept.gather(1, order), uniforms[members])
            chosen[rows[members]] = by_id.gather(1, picked[:, None]).squeeze(1)
    return chosen
