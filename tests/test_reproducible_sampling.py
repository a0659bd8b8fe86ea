"""A stage's sampled answers do not depend on how its requests were batched (llm/sampling.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import run_janus

# One thread: the tiny model gains nothing from two (as in test_synth_stages.py).
ENV = {"OMP_NUM_THREADS": "1"}


def set_teacher_batch_size(project: Path, size: int) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["teacher"]["batch_size"] = size
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_preference_sets_are_the_same_at_teacher_batch_sizes_16_and_5(ci_project: Path):
    """`janus preferences` with an empty request cache each time: batches of 16 then of 5 (other
    neighbours, other padding, other prefix groups) write byte-identical preference sets."""
    run_janus(ci_project, "instructions", **ENV)
    written = []
    for size in (16, 5):
        set_teacher_batch_size(ci_project, size)
        shutil.rmtree(ci_project / ".cache", ignore_errors=True)
        run_janus(ci_project, "preferences", **ENV)
        written.append((ci_project / "artifacts/synth/preference_sets.jsonl").read_text())
    assert written[0].count("\n") >= 6  # the ci profile's instructions, each with its sets
    assert written[0] == written[1]
