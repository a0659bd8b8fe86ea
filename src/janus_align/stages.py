"""The stage table: every pipeline stage is `janus <stage>`, run by one module's `run(params, **options)`.

A module of its own, importing nothing, so that whatever needs the table (the CLI that runs the
stages, `janus preload` that imports their modules ahead, `train.launch` that starts a training
stage under accelerate, `janus dvc-deps` that lists each stage's code) reads it without importing
the CLI: imports run one way, from the CLI down.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Stage(NamedTuple):
    """One stage: the module whose `run(params, **options)` it calls, the fixed options, the help."""

    module: str
    options: dict[str, Any]
    help: str


STAGES: dict[str, Stage] = {
    "prepare_model": Stage("janus_align.models.prepare_model", {}, "convert model.base into a plain checkpoint"),
    "instructions": Stage("janus_align.synth.instructions", {}, "filter, dedup, decontaminate and sample instructions"),
    "preferences": Stage("janus_align.synth.preferences", {}, "3 preference sets x 4 dimensions per instruction"),
    "system_messages": Stage("janus_align.synth.system_messages", {}, "one system message per preference set"),
    "responses": Stage("janus_align.synth.responses", {}, "gold response per (system message, instruction)"),
    "assemble": Stage("janus_align.synth.assemble", {}, "SFT, SFT-small, DPO, ORPO and RM splits"),
    "validate": Stage("janus_align.validate.validate", {}, "Great Expectations suites over every split"),
    "bench": Stage("janus_align.bench.bench", {}, "build the Multifaceted Bench"),
    "tune": Stage("janus_align.train.tune", {}, "Optuna study over SFT hyperparameters"),
    "train_sft": Stage("janus_align.train.train_sft", {"variant": "sft"}, "SFT on the full split (Janus)"),
    "train_sft_small": Stage(
        "janus_align.train.train_sft", {"variant": "sft_small"}, "SFT on the small split (Janus*)"
    ),
    "train_dpo": Stage("janus_align.train.train_dpo", {}, "DPO from Janus*"),
    "train_orpo": Stage("janus_align.train.train_orpo", {}, "ORPO from the base model"),
    "train_rm": Stage("janus_align.train.train_rm", {}, "reward model from a 1-epoch SFT model"),
    "generate": Stage("janus_align.evaluate.generate", {}, "answer every bench prompt with one candidate (--model)"),
    "judge": Stage(
        "janus_align.evaluate.judge", {}, "judge candidates' answers per rubric (--model NAME; default: all)"
    ),
    "pairwise": Stage("janus_align.evaluate.pairwise", {}, "Fig. 3: two candidates' four outcomes, both orders judged"),
    "alpaca_eval": Stage("janus_align.evaluate.alpaca_eval", {}, "AlpacaEval 2.0: raw and LC win rate (--model)"),
    "arena_hard": Stage("janus_align.evaluate.arena_hard", {}, "Arena-Hard-Auto: Bradley-Terry score (--model)"),
    "report": Stage("janus_align.evaluate.report", {}, "leaderboard, CIs, win/tie matrix, plots, HTML report"),
    "mt_bench": Stage("janus_align.evaluate.mt_bench", {}, "MT-Bench: both turns answered, judged 1-10 (--model)"),
    "realtoxicity": Stage(
        "janus_align.evaluate.realtoxicity", {}, "RealToxicityPrompts: toxicity, perplexity, dist-n (--model)"
    ),
    "register": Stage("janus_align.registry.register", {}, "register the best model; move alias champion"),
}
# `--model NAME`, required; `judge` takes `--model` repeatable and optional (the CLI adds it).
STAGES_WITH_MODEL = {"generate", "alpaca_eval", "arena_hard", "mt_bench", "realtoxicity"}
