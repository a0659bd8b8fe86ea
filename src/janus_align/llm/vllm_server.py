"""Backend `vllm`: a checkpoint served by a `vllm serve` of our own on loopback, on the GPUs.

Why: the paper generated with vLLM; on GPUs its paged attention and continuous batching over
`max_concurrency` requests decode far faster than in-process `generate`. The server speaks
the OpenAI API, so requests go through OpenAIBackend (retries, concurrency gate, usage); this
module builds `vllm serve`'s command line from the settings (tensor parallelism, GPU memory
fraction, max model length) and adds vLLM's structured-output field; llm/local_server.py
owns the process (health wait, stop with the stage or with this process, a crash reported
with the end of its log).

Structured output is vLLM's guided decoding (xgrammar inside vLLM): a JSON schema goes as
OpenAI's `response_format` json_schema, which vLLM enforces; a `response_regex` goes as
`structured_outputs: {"regex": ...}` (the name vLLM 0.12 and later read; the older
`guided_regex` field was removed in 0.12). The checkpoint's own generation_config.json is
ignored (`--generation-config vllm`): only the request's sampling settings apply, as in the
other backends.

vLLM pins its own torch and transformers (requirements-vllm.txt), which the project's venv
does not share; the server is a separate program, so it runs from its own virtual environment
(`executable` names its `vllm`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.config.schema import VLLMSettings
from janus_align.errors import JanusError
from janus_align.installed_tools import installed_tool
from janus_align.llm.local_server import ServerProcess, served_settings
from janus_align.llm.openai_backend import OpenAIBackend
from janus_align.llm.transformers_backend import checkpoint_fingerprint
from janus_align.llm.types import ChatRequest

LOG = paths.LLM_CACHE.parent / "vllm-server.log"
INSTALL = (
    "python3 -m venv .venv-vllm && .venv-vllm/bin/pip install -r requirements-vllm.txt, "
    "then set executable: .venv-vllm/bin/vllm"
)


class VLLMServerError(JanusError, RuntimeError):
    """vLLM is missing, or its server did not come up."""


def vllm_executable(config: VLLMSettings) -> str:
    """The `vllm` program `executable` names (a path, or a name in the venv's bin/ or on PATH)."""
    if "/" in config.executable:
        path = Path(config.executable)
        if path.is_file():
            return str(path)
        found = None
    else:
        found = installed_tool(config.executable)
    if found is None:
        raise VLLMServerError(
            f"backend vllm: no `{config.executable}` program (executable setting); install it: {INSTALL}"
        )
    return found


def served_name(model: str) -> str:
    """The model name the server answers to: a checkpoint directory's name, or the hub id."""
    return Path(model).name if Path(model).is_dir() else model


def serve_command(executable: str, config: VLLMSettings, model: str, port: int) -> list[str]:
    """`vllm serve` for `model` (a checkpoint directory or a Hugging Face id) on 127.0.0.1:`port`."""
    return [
        executable, "serve", model,
        "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", served_name(model),
        "--tensor-parallel-size", str(config.tensor_parallel_size),
        "--gpu-memory-utilization", str(config.gpu_memory_utilization),
        "--max-model-len", str(config.max_model_len),
        "--max-num-seqs", str(config.max_concurrency),
        "--dtype", config.dtype,
        "--generation-config", "vllm",
    ]  # fmt: skip


def vllm_model_id(model: str, dtype: str) -> str:
    """The cache's name for the model: a checkpoint's weights (a retrained one never reuses
    cached answers), or the hub id; vLLM's kernels answer differently from in-process decoding."""
    path = Path(model)
    if path.is_dir():
        return f"vllm:{path.name}@{checkpoint_fingerprint(path)}/{dtype}"
    return f"vllm:{model}/{dtype}"


class VLLMServerBackend(OpenAIBackend):
    """A `vllm serve` process of our own, up to `max_concurrency` requests in flight."""

    def __init__(self, config: VLLMSettings, model: str):
        executable = vllm_executable(config)
        self.server = ServerProcess(
            "vllm serve", lambda port: serve_command(executable, config, model, port), LOG, VLLMServerError
        )
        self.process = self.server.process
        self.server.wait_until_healthy(config.startup_timeout_s, model)
        super().__init__(served_settings(served_name(model), self.server.base_url, config))
        self.model_id = vllm_model_id(model, config.dtype)

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body = super()._body(request)
        if request.response_regex is not None:
            body["structured_outputs"] = {"regex": request.response_regex}
        return body

    def close(self) -> None:
        self.server.stop()
