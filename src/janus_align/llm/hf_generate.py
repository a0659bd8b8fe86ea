"""Decoding on a GPU: transformers' own `generate`, batched with left padding.

Why not our loop (llm/decoding.py) there: it drops finished rows to save the per-row cost a
CPU pays, and picks each row's token in Python from its own random stream; on a GPU a step's
cost barely grows with the batch and the Python per step is what costs, so `generate`'s fused
path is the faster one (benchmarks/gpu_check.sh measures both). The price: rows of one call
share one random stream (seeded from the rows' own seeds), so on a GPU a sampled answer depends
on the batch it was decoded in; the model id says `generate`, so such answers never meet the
CPU loop's in the request cache.

Rows of one call share one sampling setting (`generate` takes one), so the backend groups its
requests by sampling first. Structured output is the same xgrammar masks as on the CPU, one
matcher per row (None: unconstrained), applied by `GrammarMask` at every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from janus_align.config.schema import Sampling
from janus_align.llm.decoding import Decoded

# Bump whenever a change here can change the tokens a row gets (part of the GPU model id).
GENERATE_VERSION = 1


class GrammarMask(LogitsProcessor):
    """Per-row xgrammar masks inside `generate` (rows without a grammar are left alone).

    Unlike `xgrammar.contrib.hf.LogitsProcessor` it takes rows of mixed kinds, leaves a row alone
    once it emitted a stop token (`generate` pads it from then on), and ends a row whose grammar
    terminated on a token of its own with the first stop token, as the CPU loop ends it.
    """

    def __init__(self, grammars: Sequence[Any], stop_ids: Sequence[int]):
        import xgrammar

        self._xgr = xgrammar
        self.matchers = [None if g is None else xgrammar.GrammarMatcher(g) for g in grammars]
        vocab = next(g for g in grammars if g is not None).tokenizer_info.vocab_size
        self.bitmask = xgrammar.allocate_token_bitmask(len(grammars), vocab)
        self.stop = set(stop_ids)
        self.end_token = min(stop_ids)
        self.done = [False] * len(grammars)
        self.started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        last = input_ids[:, -1].tolist() if self.started else [None] * len(self.matchers)
        self.started = True
        ended = []
        for row, (matcher, token) in enumerate(zip(self.matchers, last)):
            if token is not None and not self.done[row]:
                if token in self.stop:
                    self.done[row] = True
                elif matcher is not None and not matcher.is_terminated():
                    matcher.accept_token(token)
            if matcher is None or self.done[row]:
                self.bitmask[row].fill_(-1)  # every token allowed
            elif matcher.is_terminated():
                ended.append(row)
                self.bitmask[row].fill_(-1)
            else:
                matcher.fill_next_token_bitmask(self.bitmask, row)
        self._xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device))
        for row in ended:
            scores[row].fill_(float("-inf"))
            scores[row, self.end_token] = 0.0
        return scores


def generation_config(sampling: Sampling, stop_ids: Sequence[int], pad_id: int) -> GenerationConfig:
    """`sampling` as transformers' settings, with nothing of the checkpoint's own defaults: only
    temperature, top-p and the repetition penalty shape the distribution, as in the CPU loop."""
    sampled = sampling.temperature > 0
    return GenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=sampled,
        temperature=sampling.temperature if sampled else None,
        top_p=sampling.top_p if sampled else None,
        top_k=None,
        min_p=None,
        repetition_penalty=sampling.repetition_penalty,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
    )


def batch_seed(seeds: Sequence[int]) -> int:
    """The one seed of a `generate` call: a function of every row's seed, so the same batch
    samples the same answers again."""
    mixed = 0
    for seed in seeds:
        mixed = (mixed * 1_000_003 + seed) % (2**63 - 1)
    return mixed


@torch.inference_mode()
def generate_rows(
    model: Any,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    sampling: Sampling,
    stop_ids: Sequence[int],
    seeds: Sequence[int],
    grammars: Sequence[Any],
) -> list[Decoded]:
    """Decode `prompts` (token ids) in one left-padded `generate` call on the model's device.

    Returns each row's tokens up to (not including) its first stop token, and whether it stopped.
    """
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    processors = LogitsProcessorList()
    if any(g is not None for g in grammars):
        processors.append(GrammarMask(grammars, stop_ids))
    torch.manual_seed(batch_seed(seeds))
    output = model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        generation_config=generation_config(sampling, stop_ids, pad_id),
        logits_processor=processors,
    )
    stop = set(stop_ids)
    decoded = []
    for row in output[:, width:].tolist():
        cut = next((i for i, token in enumerate(row) if token in stop), None)
        decoded.append(Decoded(row if cut is None else row[:cut], cut is not None))
    return decoded
