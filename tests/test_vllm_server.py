"""The vllm backend's server lifecycle, against a stand-in `vllm serve` (tests/vllm_stand_in.py).

No GPU here, so no real vLLM: the stand-in takes vLLM's command line and serves the
OpenAI-compatible loopback server on the port it names, so what is tested is real: the command
line built from the settings, the health wait (503 while loading), the requests through the
openai backend with vLLM's structured-output fields, the stop with the stage, the stop with a
SIGKILLed parent, and a crash while loading reported with the end of the server's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from janus_align.config import Sampling, VLLMSettings
from janus_align.config.schema import parse_llm_settings
from janus_align.errors import JanusError
from janus_align.llm import ChatRequest
from janus_align.llm.engine import opened_engine
from janus_align.llm.transformers_backend import checkpoint_fingerprint
from loopback_server import process_alive

TESTS = Path(__file__).parent
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable `vllm` that runs the stand-in with this interpreter; the test runs in tmp_path."""
    program = tmp_path / "bin" / "vllm"
    program.parent.mkdir()
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TESTS / "vllm_stand_in.py"}" "$@"\n')
    program.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STAND_IN_RECORD", str(tmp_path / "record.jsonl"))
    monkeypatch.delenv("STAND_IN_CRASH", raising=False)
    return program


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A directory that stands for a checkpoint (the stand-in loads nothing)."""
    path = tmp_path / "models" / "sft"
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "mistral"}')
    return path


def settings(program: Path, model: str, **overrides) -> VLLMSettings:
    values = dict(
        model=model,
        executable=str(program),
        tensor_parallel_size=2,
        gpu_memory_utilization=0.55,
        max_model_len=2048,
        max_concurrency=8,
        startup_timeout_s=30,
    )
    return VLLMSettings(**{**values, **overrides})


def recorded(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_backend_is_chosen_by_its_key_and_refuses_unknown_keys():
    assert isinstance(parse_llm_settings({"backend": "vllm", "model": "sft"}), VLLMSettings)
    with pytest.raises(ValueError, match="batch_size"):
        parse_llm_settings({"backend": "vllm", "model": "sft", "batch_size": 4})


def test_missing_vllm_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for executable in ("vllm", str(tmp_path / "no-venv" / "bin" / "vllm")):
        config = VLLMSettings(model="sft", executable=executable)
        with pytest.raises(JanusError, match=r"pip install -r requirements-vllm\.txt"):
            with opened_engine(config, "teacher", cache_path=tmp_path / "llm.sqlite"):
                pass


def test_serves_plain_schema_and_regex_requests_then_stops_with_the_stage(stand_in, checkpoint, monkeypatch):
    monkeypatch.setenv("STAND_IN_LOAD_S", "1.0")  # /health answers 503 for a second: the wait must hold
    sampling = Sampling(max_new_tokens=32, temperature=0.7, top_p=0.9, repetition_penalty=1.05)
    requests = [
        ChatRequest.of("Where is the gold?", sampling=sampling, seed=1),
        ChatRequest.of("Name a city.", sampling=sampling, seed=2, response_schema=SCHEMA),
        ChatRequest.of("One paragraph, please.", sampling=sampling, seed=3, response_regex=r"[^\n\r]+"),
    ]
    started = time.monotonic()
    with opened_engine(settings(stand_in, str(checkpoint)), "teacher", cache_path="llm.sqlite") as engine:
        assert time.monotonic() - started >= 1.0  # it waited for the health check
        server = engine.backend.process
        results = engine.complete(requests)
        assert all(r.ok for r in results), [r.error for r in results]
        assert results[0].text == "echo: Where is the gold?"
        assert results[1].parsed == {"city": "xx"}
        assert engine.model_id == f"vllm:sft@{checkpoint_fingerprint(checkpoint)}/bfloat16"
    assert server.poll() is not None, "the stage ended but vllm serve runs on"
    [start, *bodies] = recorded(stand_in.parent.parent / "record.jsonl")
    argv = start["argv"]
    assert argv[:2] == ["serve", str(checkpoint)]
    flags = dict(zip(argv[2::2], argv[3::2]))
    assert flags["--host"] == "127.0.0.1" and flags["--served-model-name"] == "sft"
    assert (flags["--tensor-parallel-size"], flags["--gpu-memory-utilization"]) == ("2", "0.55")
    assert (flags["--max-model-len"], flags["--max-num-seqs"], flags["--dtype"]) == ("2048", "8", "bfloat16")
    assert flags["--generation-config"] == "vllm"  # the checkpoint's sampling defaults stay out
    by_prompt = {b["body"]["messages"][-1]["content"]: b["body"] for b in bodies}
    assert by_prompt["Name a city."]["response_format"]["json_schema"]["schema"] == SCHEMA
    assert by_prompt["One paragraph, please."]["structured_outputs"] == {"regex": r"[^\n\r]+"}
    assert "structured_outputs" not in by_prompt["Where is the gold?"]
    assert {b["model"] for b in by_prompt.values()} == {"sft"}
    assert (
        by_prompt["Where is the gold?"]["repetition_penalty"] == 1.05 and by_prompt["Where is the gold?"]["seed"] == 1
    )


def test_a_crash_while_loading_is_reported_with_the_end_of_its_log(stand_in, checkpoint, monkeypatch):
    monkeypatch.setenv("STAND_IN_CRASH", "1")
    with pytest.raises(JanusError, match=r"exited with code 1 (.|\n)*CUDA out of memory \(stand-in\)"):
        with opened_engine(settings(stand_in, str(checkpoint)), "teacher", cache_path="llm.sqlite"):
            pass


def test_a_server_never_healthy_is_stopped_and_reported(stand_in, checkpoint, monkeypatch):
    monkeypatch.setenv("STAND_IN_LOAD_S", "600")
    config = settings(stand_in, str(checkpoint), startup_timeout_s=1.5)
    with pytest.raises(JanusError, match="did not become healthy within 2 s") as caught:
        with opened_engine(config, "teacher", cache_path="llm.sqlite"):
            pass
    assert "stand-in vllm: serve" in str(caught.value)  # the log's tail
    [start] = recorded(stand_in.parent.parent / "record.jsonl")
    assert not process_alive(start["pid"]), "an unhealthy server was left running"


def test_the_server_dies_with_a_killed_stage(stand_in, checkpoint):
    """A SIGKILLed stage (an interrupted `dvc repro`) must not leave vllm serve holding the GPUs."""
    script = (
        "import time\n"
        "from janus_align.config import VLLMSettings\n"
        "from janus_align.llm import open_engine\n"
        f"engine = open_engine(VLLMSettings(model={str(checkpoint)!r}, executable={str(stand_in)!r}), "
        "cache_path='llm.sqlite')\n"
        "print(engine.backend.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    stage = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    server_pid = int(stage.stdout.readline())
    assert process_alive(server_pid)
    os.kill(stage.pid, signal.SIGKILL)
    stage.wait()
    for _ in range(50):
        if not process_alive(server_pid):
            return
        time.sleep(0.1)
    os.kill(server_pid, signal.SIGKILL)
    pytest.fail("vllm serve outlived the SIGKILLed process that started it")


def test_generate_backend_vllm_serves_a_pipeline_candidate_by_name(stand_in):
    from janus_align.config import Params
    from janus_align.evaluate.generate import answer, local_config

    candidate = Path("artifacts/models/sft")  # the test runs in tmp_path: a pipeline model's place
    candidate.mkdir(parents=True)
    (candidate / "config.json").write_text('{"model_type": "mistral"}')
    params = Params()
    server = params.generate.vllm.model_copy(update={"executable": str(stand_in), "startup_timeout_s": 30})
    params = params.model_copy(
        update={"generate": params.generate.model_copy(update={"backend": "vllm", "vllm": server})}
    )
    config = local_config(params, "sft")
    assert isinstance(config, VLLMSettings) and config.sampling == params.generate.sampling
    [result], _, model_id = answer(params, config, "sft", [ChatRequest.of("Hi?", sampling=config.sampling, seed=4)])
    assert result.ok and result.text == "echo: Hi?"
    assert model_id.startswith("vllm:sft@")
    [start, _] = recorded(stand_in.parent.parent / "record.jsonl")
    assert Path(start["argv"][1]).resolve() == candidate.resolve()
