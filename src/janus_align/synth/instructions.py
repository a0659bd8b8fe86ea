"""Stage `instructions`: the instruction pool, filtered, deduplicated, decontaminated, sampled.

Reads every `data/instructions/*.jsonl` file ({instruction, input, source}; `pool.jsonl` is the
bundled pool, main_source `janus-default-pool`) and, with `synth.include_hub_sources`, the five
source datasets of the paper through `datasets`. Then, in this order, each filter removing what
the earlier ones kept:

    empty            nothing left after whitespace normalization
    too_long         prompt longer than synth.max_instruction_chars
    exact_duplicate  same text, casefolded and whitespace-collapsed (the first copy stays)
    near_duplicate   character n-gram Jaccard >= synth.near_duplicate_threshold (MinHash LSH)
    persona          the instruction already gives the assistant a persona or role
    bench_overlap    shares >= synth.decontamination_threshold of a bench prompt's n-grams

and samples `synth.num_instructions` of what is left with `seed`. Writes
artifacts/synth/instructions.jsonl ({id, prompt, main_source, original_source}; the id is a
hash of the normalized prompt, so it survives pool edits), every removed row with its filter
and the reason (instructions_removed.jsonl), and the counts (metrics/instructions.json).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.inputs import instruction_files
from janus_align.records import iter_jsonl, write_json, write_jsonl
from janus_align.synth.filters import (
    BenchIndex,
    NearDuplicateIndex,
    dedup_key,
    is_persona,
    join_prompt,
    normalize_text,
)
from janus_align.synth.rows import InstructionRow, dump

DEFAULT_POOL_SOURCE = "janus-default-pool"
FILTERS = ("empty", "too_long", "exact_duplicate", "near_duplicate", "persona", "bench_overlap")


@dataclass
class Candidate:
    instruction: str
    input: str
    main_source: str
    original_source: str

    @property
    def prompt(self) -> str:
        return join_prompt(self.instruction, self.input)


# ---- the paper's five sources (PAPER.md section 1.1) -------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _nectar(row: dict[str, Any]) -> tuple[str, str] | None:
    # Prompts are "\n\nHuman: ...\n\nAssistant:" transcripts; keep single-turn ones.
    if row.get("turns", 1) != 1:
        return None
    prompt = _text(row.get("prompt")).strip().removeprefix("Human:").strip().removesuffix("Assistant:").strip()
    source = row.get("source")
    return prompt, (source[0] if isinstance(source, list) and source else _text(source) or "nectar")


def _with_source(key: str, default: str) -> Callable[[dict[str, Any]], tuple[str, str] | None]:
    return lambda row: (_text(row.get(key)), _text(row.get("source")) or default)


def _arena(row: dict[str, Any]) -> tuple[str, str] | None:
    turns = row.get("conversation_a") or []
    if row.get("turn", 1) != 1 or not turns or turns[0].get("role") != "user":
        return None
    return _text(turns[0].get("content")), "chatbot_arena"


def _dsp(row: dict[str, Any]) -> tuple[str, str] | None:
    prompt = next((row[k] for k in ("query", "prompt", "instruction", "question") if isinstance(row.get(k), str)), "")
    return prompt, _text(row.get("domain")) or "dsp"


# main_source -> (hub id, split, row -> (prompt, original_source) or None to skip)
HUB_SOURCES: dict[str, tuple[str, str, Callable[[dict[str, Any]], tuple[str, str] | None]]] = {
    "Nectar": ("berkeley-nest/Nectar", "train", _nectar),
    "OpenHermesPreferences": ("argilla/OpenHermesPreferences", "train", _with_source("prompt", "openhermes")),
    "UltraFeedback": (
        "allenai/ultrafeedback_binarized_cleaned",
        "train_prefs",
        _with_source("prompt", "ultrafeedback"),
    ),
    "Chatbot Arena Conversations": ("lmsys/chatbot_arena_conversations", "train", _arena),
    "DSP": ("Linear95/DSP", "train", _dsp),
}


def hub_candidates() -> Iterator[Candidate]:
    """Rows of the five source datasets; raises JanusError naming each one that cannot be loaded."""
    from datasets import load_dataset

    loaded, missing = [], []
    for main_source, (repo, split, extract) in HUB_SOURCES.items():
        try:
            loaded.append((main_source, extract, load_dataset(repo, split=split)))
        except Exception as exc:  # offline, gated, renamed: all mean "not available here"
            missing.append(f"{repo} ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
    if missing:
        raise JanusError(
            "synth.include_hub_sources is true but the hub sources are missing: "
            + "; ".join(missing)
            + ". Connect to the Hugging Face hub (unset HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) or pre-download "
            "them into the datasets cache, or set synth.include_hub_sources: false to use data/instructions/ only."
        )
    for main_source, extract, dataset in loaded:
        for row in dataset:
            found = extract(row)
            if found is not None:
                yield Candidate(found[0], "", main_source, found[1])


def pool_candidates(directory: Path = paths.INSTRUCTIONS_DIR) -> Iterator[Candidate]:
    for path in instruction_files(directory):
        main_source = DEFAULT_POOL_SOURCE if path.name == "pool.jsonl" else path.stem
        for row in iter_jsonl(path):
            yield Candidate(
                row.get("instruction") or "", row.get("input") or "", main_source, row.get("source") or "unknown"
            )


# ---- the filters, in order -------------------------------------------------------------------


def instruction_id(prompt: str) -> str:
    return "ins-" + hashlib.sha256(dedup_key(prompt).encode("utf-8")).hexdigest()[:12]


def filter_candidates(
    candidates: list[Candidate], params: Params, bench_prompts: list[str]
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """(kept candidates in input order, removed rows {filter, reason, prompt, ...})."""
    synth = params.synth
    near = NearDuplicateIndex(synth.near_duplicate_threshold, synth.near_duplicate_ngram, params.seed)
    bench = BenchIndex(bench_prompts, synth.decontamination_ngram)
    seen: dict[str, str] = {}
    kept: list[Candidate] = []
    removed: list[dict[str, Any]] = []

    def drop(candidate: Candidate, name: str, reason: str) -> None:
        removed.append(
            {
                "filter": name,
                "reason": reason,
                "prompt": candidate.prompt,
                "main_source": candidate.main_source,
                "original_source": candidate.original_source,
            }
        )

    for candidate in candidates:
        candidate.instruction = normalize_text(candidate.instruction)
        candidate.input = normalize_text(candidate.input, collapse_inner=False)
        prompt = candidate.prompt
        if not candidate.instruction:
            drop(candidate, "empty", "no text after whitespace normalization")
            continue
        if len(prompt) > synth.max_instruction_chars:
            drop(
                candidate,
                "too_long",
                f"{len(prompt)} chars > synth.max_instruction_chars {synth.max_instruction_chars}",
            )
            continue
        key = dedup_key(prompt)
        if key in seen:
            drop(candidate, "exact_duplicate", f"same text as {seen[key]}")
            continue
        seen[key] = instruction_id(prompt)
        duplicate = near.add(seen[key], prompt)
        if duplicate is not None:
            drop(candidate, "near_duplicate", f"Jaccard {duplicate[1]} with {duplicate[0]}")
            continue
        if is_persona(candidate.instruction):
            drop(candidate, "persona", "assigns the assistant a persona or role")
            continue
        bench_prompt, share = bench.overlap(prompt)
        if share >= synth.decontamination_threshold:
            drop(candidate, "bench_overlap", f"{share:.2f} of the n-grams of bench prompt {bench_prompt!r}")
            continue
        kept.append(candidate)
    return kept, removed


def sample(kept: list[Candidate], count: int, seed: int) -> list[Candidate]:
    """`count` candidates drawn with `seed`, in pool order (all of them when fewer are left)."""
    if count >= len(kept):
        return list(kept)
    chosen = sorted(random.Random(seed).sample(range(len(kept)), count))
    return [kept[i] for i in chosen]


def run(params: Params) -> list[InstructionRow]:
    candidates = list(pool_candidates())
    if params.synth.include_hub_sources:
        candidates += list(hub_candidates())
    bench_prompts = [row["prompt"] for row in iter_jsonl(paths.BENCH_PROMPTS)]
    kept, removed = filter_candidates(candidates, params, bench_prompts)
    sampled = sample(kept, params.synth.num_instructions, params.seed)
    if not sampled:
        raise JanusError(f"{paths.INSTRUCTIONS_DIR}: no instruction is left after filtering ({len(candidates)} read)")
    rows = [
        InstructionRow(
            id=instruction_id(c.prompt), prompt=c.prompt, main_source=c.main_source, original_source=c.original_source
        )
        for c in sampled
    ]
    write_jsonl(paths.INSTRUCTIONS, dump(rows))
    write_jsonl(paths.INSTRUCTIONS_REMOVED, removed)
    removed_counts = Counter(r["filter"] for r in removed)
    metrics: dict[str, Any] = {
        "read": len(candidates),
        "read_per_main_source": dict(Counter(c.main_source for c in candidates)),
        "removed": {name: removed_counts.get(name, 0) for name in FILTERS},
        "removed_total": len(removed),
        "kept": len(kept),
        "requested": params.synth.num_instructions,
        "sampled": len(rows),
        "sampled_per_original_source": dict(Counter(r.original_source for r in rows)),
    }
    write_json(paths.INSTRUCTIONS_METRICS, metrics)
    _log(metrics)
    if len(rows) < params.synth.num_instructions:
        print(f"instructions: warning: only {len(rows)} left after filtering, fewer than synth.num_instructions")
    print(
        f"instructions: read {len(candidates)}, removed {len(removed)} "
        f"({', '.join(f'{k} {v}' for k, v in metrics['removed'].items())}), kept {len(kept)}, sampled {len(rows)}"
    )
    return rows


def _log(metrics: dict[str, Any]) -> None:
    import mlflow

    if mlflow.active_run() is None:
        return
    values = {f"removed_{k}": v for k, v in metrics["removed"].items()}
    values.update({k: metrics[k] for k in ("read", "removed_total", "kept", "sampled")})
    mlflow.log_metrics({k: float(v) for k, v in values.items()})
    mlflow.log_artifact(str(paths.INSTRUCTIONS_REMOVED))
