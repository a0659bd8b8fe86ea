"""Hand-made bench rows in the official Multifaceted Bench schema, for the evaluation tests.

Built from the bundled data (bench prompts, rubric examples) so they look like what the bench
stage writes, without running a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "src" / "janus_align" / "default_data"
DIMENSIONS = ("style", "background_knowledge", "informativeness", "harmlessness")
SUBDIMENSIONS = ("vividness", "expert", "practicality", "safety")


def official_rows(count: int = 5, with_ids: bool = True) -> list[dict[str, Any]]:
    """`count` bench rows, one per source group in turn, exactly in the official schema."""
    prompts = [
        json.loads(line) for line in (DEFAULT_DATA / "bench" / "prompts.jsonl").read_text().splitlines() if line.strip()
    ]
    examples = json.loads((DEFAULT_DATA / "bench" / "rubric_examples.json").read_text())
    by_group: dict[str, list[dict[str, Any]]] = {}
    for row in prompts:
        by_group.setdefault(row["source"], []).append(row)
    groups = sorted(by_group)
    rows = []
    for n in range(count):
        source_row = by_group[groups[n % len(groups)]][n // len(groups)]
        preference_set = [
            {
                "dimension": dimension,
                "subdimension": sub,
                "preference": f"{sub} preference {n}",
                "description": f"The user wants {sub} in the answer to prompt {n}.",
            }
            for dimension, sub in zip(DIMENSIONS, SUBDIMENSIONS)
        ]
        row = {
            "source": source_row["source"],
            "preference_set": preference_set,
            "system": f"You are a patient guide number {n} who explains with vivid stories and flags every risk.",
            "prompt": source_row["prompt"],
            "reference_answer": f"A reference answer for prompt {n}, tailored to every preference.",
            "rubrics": [json.loads(json.dumps(examples[k % 3])) for k in range(4)],
        }
        rows.append({"id": f"bench-{n}", **row} if with_ids else row)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def set_params(project: Path, section: str, **values: Any) -> None:
    """Change keys of one params.yaml section in a test project (what `dvc exp run -S` would do)."""
    import yaml

    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def judgment(item_id: str, rubric: int, verdict: int | None, repeat: int = 0, **fields: Any) -> Any:
    """A `Judgment` as the judge stage writes it, with the fields a scoring test does not care about filled in."""
    from janus_align.evaluate.rows import Judgment

    row: dict[str, Any] = {
        "id": item_id,
        "source": "AlpacaEval",
        "model": "m",
        "rubric_index": rubric,
        "dimension": DIMENSIONS[rubric % len(DIMENSIONS)],
        "repeat": repeat,
        "verdict": verdict,
        "feedback": "",
        "raw": None if verdict is None else f"Feedback: ok [RESULT] {verdict}",
        "error": None if verdict is not None else "no verdict in the judge's answer",
        "call_failed": False,
        "attempts": 1,
        "seed": 0,
        "judge_model": "judge@test",
        "prompt_hash": "0" * 16,
        "template_version": "test",
    }
    return Judgment(**{**row, **fields})
