"""The llama_cpp backend: a real llama-server on loopback serving the embedded SmolLM2 GGUF.

Tests marked `llama_server` need the binary that `make llama-server` builds into .venv/bin
(`make test-all` builds and runs them; see the Makefile for why CI's `make test` does not).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from janus_align.config import LlamaCppSettings, Sampling
from janus_align.llm import ChatRequest, open_engine
from janus_align.llm.llama_server import LlamaServerError
from loopback_server import process_alive

EMBEDDED = "embedded:smollm2-135m-instruct"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}, "confidence": {"type": "integer", "enum": [1, 2, 3]}},
    "required": ["city", "confidence"],
    "additionalProperties": False,
}
needs_server = pytest.mark.skipif(
    shutil.which("llama-server") is None, reason="llama-server not built (make llama-server)"
)


def config(**overrides) -> LlamaCppSettings:
    settings = dict(model=EMBEDDED, max_concurrency=4, context_length=1024)
    return LlamaCppSettings(**{**settings, **overrides})


def test_a_checkpoint_name_is_refused_with_the_key_named():
    with pytest.raises(ValidationError, match="backend llama_cpp runs a GGUF file"):
        LlamaCppSettings(model="base")


def test_missing_binary_names_the_make_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LlamaServerError, match="make llama-server"):
        open_engine(config(), cache_path=tmp_path / "llm.sqlite")


@pytest.mark.slow
@pytest.mark.llama_server
@needs_server
def test_a_broken_gguf_fails_with_the_server_log(tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(64))
    with pytest.raises(LlamaServerError, match="exited with code"):
        open_engine(config(model=str(broken)), cache_path=tmp_path / "llm.sqlite")


@pytest.mark.slow
@pytest.mark.llama_server
@needs_server
def test_embedded_gguf_answers_plain_and_schema_requests_then_the_cache(tmp_path: Path):
    sampling = Sampling(max_new_tokens=48, temperature=0.7, top_p=0.9, repetition_penalty=1.05)
    requests = [
        ChatRequest.of(
            "What is the capital of France?", system="Answer in one short sentence.", sampling=sampling, seed=1
        ),
        ChatRequest.of(
            "Name the capital of Italy and your confidence.", sampling=sampling, seed=2, response_schema=SCHEMA
        ),
        ChatRequest.of(
            "Name the capital of Spain and your confidence.", sampling=sampling, seed=3, response_schema=SCHEMA
        ),
    ]
    engine = open_engine(config(), cache_path=tmp_path / "llm.sqlite")
    server = engine.backend.process
    try:
        results = engine.complete(requests)
        assert all(r.ok for r in results), [r.error for r in results]
        assert results[0].text.strip()
        for structured in results[1:]:
            assert set(structured.parsed) == {"city", "confidence"}
            assert structured.parsed["confidence"] in (1, 2, 3)
        assert engine.usage.prompt_tokens > 0 and 0 < engine.usage.completion_tokens <= 3 * 48
        assert engine.model_id == f"llama.cpp:{EMBEDDED}"
        again = engine.complete(requests)
        assert [r.text for r in again] == [r.text for r in results]
        assert engine.usage.cached == 3
    finally:
        engine.close()
    assert server.poll() is not None, "close() left llama-server running"


@pytest.mark.slow
@pytest.mark.llama_server
@needs_server
def test_the_server_dies_with_a_killed_stage(tmp_path: Path):
    """A SIGKILLed stage (an interrupted `dvc repro`) must not leave its server behind."""
    script = (
        "import sys, time\n"
        "from janus_align.config import LlamaCppSettings\n"
        "from janus_align.llm import open_engine\n"
        f"engine = open_engine(LlamaCppSettings(model={EMBEDDED!r}, max_concurrency=1, "
        "context_length=512), cache_path='llm.sqlite')\n"
        "print(engine.backend.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    stage = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    server_pid = int(stage.stdout.readline())
    os.kill(stage.pid, signal.SIGKILL)
    stage.wait()
    for _ in range(50):
        if not process_alive(server_pid):
            return
        time.sleep(0.1)
    os.kill(server_pid, signal.SIGKILL)
    pytest.fail("llama-server outlived the SIGKILLed process that started it")
