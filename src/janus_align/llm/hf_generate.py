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
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

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
    """`sampling` as transformers' settings, with nothing of the checkpoint's own defaults.

    Temperature and top-p are neutral here (1.0): `generate` runs the processors passed to it
    after its own, and the grammar mask must come before the nucleus is cut (a nucleus cut
    first can hold no token the grammar allows), so `sampling_processors` applies them.
    """
    # Explicit neutral values: `generate` fills what is None from the checkpoint's own
    # generation_config (`neutral_generation_config` clears the rest of it).
    return GenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=sampling.temperature > 0,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        repetition_penalty=sampling.repetition_penalty,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
    )


def sampling_processors(sampling: Sampling, grammars: Sequence[Any], stop_ids: Sequence[int]) -> LogitsProcessorList:
    """The grammar mask (rows with a grammar), then temperature and top-p, in that order: only
    temperature, top-p and the repetition penalty shape the distribution, as in the CPU loop."""
    processors = LogitsProcessorList()
    if any(g is not None for g in grammars):
        processors.append(GrammarMask(grammars, stop_ids))
    if sampling.temperature > 0:
        if sampling.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_p < 1.0:
            processors.append(TopPLogitsWarper(sampling.top_p))
    return processors


def neutral_generation_config(model: Any, stop_ids: Sequence[int], pad_id: int) -> None:
    """Replace the checkpoint's generation defaults (an instruct model's top-k 50, temperature 0.6,
    ...), which `generate` would apply to every setting a call leaves unset, with none."""
    model.generation_config = GenerationConfig(eos_token_id=list(stop_ids), pad_token_id=pad_id)


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
    torch.manual_seed(batch_seed(seeds))
    output = model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        generation_config=generation_config(sampling, stop_ids, pad_id),
        logits_processor=sampling_processors(sampling, grammars, stop_ids),
    )
    stop = set(stop_ids)
    decoded = []
    for row in output[:, width:].tolist():
        cut = next((i for i, token in enumerate(row) if token in stop), None)
        decoded.append(Decoded(row if cut is None else row[:cut], cut is not None))
    return decoded
