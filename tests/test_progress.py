"""Progress that tells the truth: answers counted as each row of a batch ends, plain lines in logs."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from janus_align.config import Sampling, TransformersSettings
from janus_align.llm import ChatRequest, ChatResult
from janus_align.llm.cache import RequestCache
from janus_align.llm.engine import LLMEngine
from janus_align.llm.progress import RequestProgress
from janus_align.llm.transformers_backend import TransformersBackend

CURSOR_UP = "\x1b[A"


@pytest.fixture(scope="module")
def backend(ci_base_project):
    return TransformersBackend(
        ci_base_project / "artifacts" / "models" / "base", TransformersSettings(batch_size=8, dtype="float32")
    )


def test_each_row_of_a_batch_is_reported_when_it_ends_not_when_the_batch_does(backend):
    """Rows with 2, 10 and 40 new tokens in one batch: each answer arrives after its own steps."""
    limits = (40, 2, 10)
    requests = [
        ChatRequest.of(f"Tell me about topic {n}.", sampling=Sampling(max_new_tokens=n, temperature=0.0), seed=n)
        for n in limits
    ]
    steps: list[int] = []
    hook = backend.model.register_forward_hook(lambda *_: steps.append(1))
    arrivals: list[tuple[int, int, ChatResult]] = []  # (request index, forward passes so far, result)
    try:
        backend.generate(requests, lambda i, result: arrivals.append((i, len(steps), result)))
    finally:
        hook.remove()
    # A random tiny model never stops by itself: each row runs to its own limit.
    assert [limits[i] for i, _, _ in arrivals] == [2, 10, 40]
    passes = [count for _, count, _ in arrivals]
    assert passes[0] < passes[1] < passes[2] == len(steps)  # the short rows did not wait for the long one
    assert passes[0] <= 4  # the prefill pass(es) and one step per token
    # The answers are those of each request decoded on its own.
    alone = LLMEngine(backend, RequestCache(":memory:"))
    for i, _, result in arrivals:
        again = alone.complete([requests[i]])[0]
        assert (result.text, result.completion_tokens) == (again.text, again.completion_tokens)


def test_the_engine_counts_answers_and_tokens_as_they_arrive(backend):
    lines = io.StringIO()  # not a terminal: plain lines, as a log file gets them
    progress = RequestProgress(total=3, desc="judge sft", stream=lines)
    progress.advance(ChatResult("a", 5, 7))
    assert (progress.done, progress.tokens_out) == (1, 7)
    assert progress.line().startswith("judge sft: 1/3 req (33%), 7 tok (") and "ETA" in progress.line()
    progress.advance(ChatResult("b", 5, 3))
    progress.advance(ChatResult("c", 5, 2))
    progress.close()
    progress.close()  # once
    written = lines.getvalue()
    assert written.count("\n") == 1 and written.startswith("judge sft: 3/3 req (100%), 12 tok (")
    assert "\r" not in written and CURSOR_UP not in written


@pytest.mark.slow
def test_stage_logs_written_to_a_file_hold_no_cursor_codes_nor_dataset_bars(ci_project, tmp_path):
    """`janus train_sft` and `janus generate` with stderr in a file (not a terminal)."""
    from bench_samples import official_rows, set_params, write_jsonl
    from conftest import BIN, janus_env
    from test_train_recipes import TUNED, write_collection

    write_collection(ci_project)
    (ci_project / "artifacts" / "tune").mkdir(parents=True)
    (ci_project / "artifacts" / "tune" / "best_params.json").write_text(json.dumps(TUNED))
    write_jsonl(ci_project / "artifacts" / "bench" / "bench.jsonl", official_rows(3))
    set_params(ci_project, "generate", candidates=["base"])
    logs = {}
    for args in (["train_sft"], ["generate", "--model", "base"]):
        log = tmp_path / f"{args[0]}.log"
        with log.open("w") as stderr:
            done = subprocess.run(
                [str(BIN / "janus"), *args], cwd=ci_project, env=janus_env(), stderr=stderr, timeout=900
            )
        assert done.returncode == 0, log.read_text()[-3000:]
        logs[args[0]] = log.read_bytes().decode()
    for name, text in logs.items():
        assert CURSOR_UP not in text, name  # the nested train/eval bars wrote 8 of them here
    assert "Tokenizing train dataset" not in logs["train_sft"] and "Truncating" not in logs["train_sft"]
    assert "generate base: 3/3 req (100%)" in logs["generate"]
