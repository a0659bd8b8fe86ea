"""The files the synthesis stages write (dvc.yaml names the same paths)."""

from pathlib import Path

from janus_align import paths

INSTRUCTIONS = paths.SYNTH / "instructions.jsonl"
INSTRUCTIONS_REMOVED = paths.SYNTH / "instructions_removed.jsonl"
PREFERENCE_SETS = paths.SYNTH / "preference_sets.jsonl"
SYSTEM_MESSAGES = paths.SYNTH / "system_messages.jsonl"
RESPONSES = paths.SYNTH / "responses.jsonl"

INSTRUCTIONS_METRICS = paths.METRICS / "instructions.json"
SYNTHESIS_METRICS = paths.METRICS / "synthesis.json"

# The stages that call the teacher, in pipeline order.
GENERATING_STAGES = ("preferences", "system_messages", "responses")
SPLITS = ("sft", "sft_small", "dpo", "orpo", "rm")


def rejects(stage: str) -> Path:
    """Rows a stage could not produce, with the raw teacher output and the reason."""
    return paths.SYNTH / "rejects" / f"{stage}.jsonl"


def stats(stage: str) -> Path:
    """Counts, tokens, cost and wall time of one generating stage (read by `assemble`)."""
    return paths.SYNTH / "stats" / f"{stage}.json"


def split_dir(split: str) -> Path:
    return paths.COLLECTION / split
