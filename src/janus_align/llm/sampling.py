"""Choosing each row's next token: repetition penalty, temperature, nucleus (top-p), and the
row's own random stream.

Semantics follow `generate` for the knobs the pipeline uses: repetition penalty (over the row's
real prompt and generated tokens), temperature, nucleus filtering, greedy at temperature 0.

A sampled row's token depends only on its logits and its own random stream, never on the rows
beside it: each sampled row owns a `torch.Generator` seeded from its request
(`ChatRequest.stream_seed`) and draws from it one uniform per vocabulary token per step
(`gumbel_noise`), whatever the batch; greedy rows draw nothing. The token is the Gumbel-max
over the row's nucleus: argmax of logit / temperature + Gumbel noise, an exact draw from the
nucleus softmax. A row's logits are not bit-identical across batch compositions on CPU (the
matrix kernels' blocking depends on the batch shape: ~2e-7 apart in float32), and Gumbel-max is
what keeps that noise from moving the draw: the token changes only if the noise reorders the top
two perturbed values (their gap is ~Exp(1)) or moves the winning token across the nucleus edge.
Inverse-CDF sampling with one uniform per step was tried and not kept: over the ci model's
near-uniform 45k-token nucleus a token leaving the nucleus shifts every later token's interval
by a whole token's width (docs/decisions.md has the counts).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def row_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One random stream per row, seeded from the row's own request (63-bit seeds)."""
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def gumbel_noise(generator: torch.Generator, vocab: int) -> torch.Tensor:
    """`vocab` standard Gumbel draws (float64) from the row's stream: one step's worth."""
    return torch.rand(vocab, generator=generator, dtype=torch.float64).log_().neg_().log_().neg_()


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
    is exactly the full sort's. Probability mass is summed in float64, so that rounding in a
    45k-term cumulative sum does not move the nucleus edge.
    """
    log_total = logits.double().logsumexp(dim=-1, keepdim=True)
    rows = torch.arange(logits.shape[0])
    reach_of = torch.as_tensor(top_p, dtype=torch.float64).expand(len(rows))
    vocab = logits.shape[-1]
    for width in [*(w for w in tiers if w < vocab), vocab]:  # the last tier is the full sort
        ordered, order = logits[rows].topk(width, dim=-1)
        probs = (ordered.double() - log_total[rows]).exp()  # probabilities over the whole vocabulary
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
    """One token per row: greedy where the temperature is 0, else the Gumbel-max over the row's
    nucleus (all tokens when its top_p is 1), with noise from `generators[row]`, the row's own."""
    chosen = logits.argmax(dim=-1)
    rows = (temperature > 0).nonzero().squeeze(1)
    if not len(rows):
        return chosen
    noise = torch.stack([gumbel_noise(generators[row], logits.shape[-1]) for row in rows.tolist()])
    scaled = logits[rows] / temperature[rows, None]
    whole = top_p[rows] >= 1.0
    if bool(whole.any()):
        chosen[rows[whole]] = (scaled[whole].double() + noise[whole]).argmax(dim=-1)
    narrow = (~whole).nonzero().squeeze(1)
    if len(narrow):
        for group, kept, token_ids in nucleus(scaled[narrow], top_p[rows[narrow]]):
            members = narrow[group]
            perturbed = kept.double() + noise[members].gather(1, token_ids)
            chosen[rows[members]] = token_ids.gather(1, perturbed.argmax(dim=-1, keepdim=True)).squeeze(1)
    return chosen
