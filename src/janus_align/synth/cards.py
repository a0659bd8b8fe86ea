"""The dataset card (README.md) written next to every split: what is in it and how it was made.

Front matter in the Hugging Face card format (so `datasets` and the hub read the data files),
then counts, the teacher and template version, the synthesis params, tokens and cost, and the
dimension/subdimension histograms of the preference sets behind the split's rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import yaml

from janus_align.config import Params
from janus_align.inputs import DIMENSIONS
from janus_align.synth.rows import PreferenceEntry

TITLES = {
    "sft": "Multifaceted Collection (SFT, every system message)",
    "sft_small": "Multifaceted Collection small (SFT, one system message per instruction)",
    "dpo": "Multifaceted Collection DPO",
    "orpo": "Multifaceted Collection ORPO",
    "rm": "Multifaceted Collection RM",
}
USES = {
    "sft": "SFT (Janus). Train on `system` + `prompt` -> `output`.",
    "sft_small": "SFT (Janus*), the start of DPO.",
    "dpo": "DPO. `chosen`/`rejected` are [system, user, assistant] conversations.",
    "orpo": "ORPO. `chosen`/`rejected` are [system, user, assistant] conversations.",
    "rm": "Reward modelling: `input` (system message + instruction) with `chosen`/`rejected` answers.",
}
TRL_TRAINERS = {
    "sft": "SFTTrainer",
    "sft_small": "SFTTrainer",
    "dpo": "DPOTrainer",
    "orpo": "ORPOTrainer (trl.experimental.orpo)",
    "rm": "RewardTrainer",
}
TRL_FORMATS = {
    "sft": "conversational prompt/completion: `prompt` [system, user], `completion` [assistant]",
    "dpo": "explicit-prompt conversational preference: `prompt` [system, user], `chosen` and `rejected` [assistant]",
}
TRL_FORMATS["sft_small"] = TRL_FORMATS["sft"]
TRL_FORMATS["orpo"] = TRL_FORMATS["rm"] = TRL_FORMATS["dpo"]


def histograms(preference_sets: Sequence[Sequence[PreferenceEntry]]) -> dict[str, Counter]:
    counts: dict[str, Counter] = {d: Counter() for d in DIMENSIONS}
    for entries in preference_sets:
        for entry in entries:
            counts.setdefault(entry.dimension, Counter())[entry.subdimension] += 1
    return counts


def _histogram_lines(counts: dict[str, Counter], top: int = 15) -> list[str]:
    lines = ["| dimension | subdimension | rows |", "|---|---|---|"]
    for dimension, counter in counts.items():
        shown = counter.most_common(top)
        for subdimension, n in shown:
            lines.append(f"| {dimension} | {subdimension.replace('|', '/')} | {n} |")
        rest = sum(counter.values()) - sum(n for _, n in shown)
        if rest:
            lines.append(f"| {dimension} | ({len(counter) - len(shown)} others) | {rest} |")
    return lines


def dataset_card(
    split: str,
    files: dict[str, dict[str, str]],
    counts: dict[str, int],
    preference_sets: Sequence[Sequence[PreferenceEntry]],
    params: Params,
    synthesis: dict[str, Any],
) -> str:
    """The README.md of one split folder; `files` maps a config name (`default`: the official
    files, `trl`: the TRL-native ones) to {HF split name: file path inside the folder}, so
    `load_dataset(folder)` reads the official files and `load_dataset(folder, "trl")` TRL's."""
    front = {
        "configs": [
            {"config_name": config, "data_files": [{"split": name, "path": path} for name, path in parts.items()]}
            for config, parts in files.items()
        ],
        "task_categories": ["text-generation"],
        "language": ["en"],
    }
    settings = {
        "seed": params.seed,
        "teacher": params.teacher.model_dump(mode="json", exclude={"api_key_env"}),
        "synth": params.synth.model_dump(mode="json"),
    }
    totals = synthesis.get("totals", {})
    counts_lines = [f"| {name} | {n} |" for name, n in counts.items()]
    dimension_counts = histograms(preference_sets)
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        f"# {TITLES[split]}",
        "",
        'Synthesized by the Janus pipeline (`janus assemble`), following "Aligning to Thousands of '
        'Preferences via System Message Generalization" (Lee et al., 2024). Same columns and types as '
        f"the released `kaist-ai` split. Use: {USES[split]}",
        "",
        f"Config `trl` (the files under `trl/`): the same rows for TRL's {TRL_TRAINERS[split]}, which "
        f"reads them as they are, in the {TRL_FORMATS[split]}:",
        "",
        "```python",
        "from datasets import load_dataset",
        f'official = load_dataset("artifacts/collection/{split}")         # the released schema',
        f'trl_ready = load_dataset("artifacts/collection/{split}", "trl")  # TRL-native',
        "```",
        "",
        "## Counts",
        "",
        "| part | rows |",
        "|---|---|",
        *counts_lines,
        "",
        "## Provenance",
        "",
        f"- teacher: `{synthesis.get('teacher', '')}`",
        f"- prompt template version: `{synthesis.get('template_version', '')}`",
        f"- profile: `{params.profile}`",
        f"- tokens (all synthesis stages, re-asks included): {totals.get('prompt_tokens', 0)} in, "
        f"{totals.get('completion_tokens', 0)} out; estimated cost ${totals.get('cost_usd', 0.0):.4f}",
        f"- rejected by the stages: {totals.get('rejected', 0)} (see artifacts/synth/stages/*/rejects.jsonl)",
        "",
        "## Dimension and subdimension histogram (preference sets behind these rows)",
        "",
        *_histogram_lines(dimension_counts),
        "",
        "## Params",
        "",
        "```yaml",
        yaml.safe_dump(settings, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
