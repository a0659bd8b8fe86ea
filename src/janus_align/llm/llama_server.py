"""Backend that runs a GGUF model in llama.cpp's `llama-server`, started on loopback for the stage.

Why: it serves any GGUF in llama.cpp's own kernels, with continuous batching over
`max_concurrency` slots and JSON-schema grammars, without converting it to a checkpoint (the
embedded SmolLM2 GGUF is the very file prepare_model dequantizes for training). On the 2-core
AVX2 machine it was no faster than the transformers backend (BENCHMARKS.md), so it is optional.

The server speaks the OpenAI API, so requests go through OpenAIBackend (its retries,
concurrency gate and usage accounting). This module only builds the server's command line and
adds llama.cpp's names for the sampling settings; llm/local_server.py owns the process (health
wait, stop on close or when this process dies, so a killed `dvc repro` leaves no server
behind). `make llama-server` builds the binary from pinned llama.cpp source.

A request's `response_regex` goes as llama.cpp's GBNF `grammar` field when it is a sequence of
character classes, each maybe repeated (`[^\n\r]+`: the same text in both syntaxes); any other
regex is sent unconstrained, as by OpenAIBackend, and the stage's own check of the answer decides.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from janus_align import paths
from janus_align.config.schema import LlamaCppSettings
from janus_align.errors import JanusError
from janus_align.installed_tools import installed_tool, scripts_dir
from janus_align.llm.local_server import ServerProcess, served_settings
from janus_align.llm.openai_backend import OpenAIBackend
from janus_align.llm.types import ChatRequest
from janus_align.models.prepare_model import EMBEDDED_PREFIX, embedded_gguf

SERVER_BINARY = "llama-server"
LOG = paths.LLM_CACHE.parent / "llama-server.log"


class LlamaServerError(JanusError, RuntimeError):
    """llama-server is missing, or did not come up."""


# Character classes, each once or repeated: `[^\n\r]+`, `[^\n\r]*[^\n\r :]`. Their text is the same
# in regex and GBNF syntax as long as they escape only what both read alike (GBNF knows no
# `\s`, `\d`, `\w`); GBNF only wants spaces between the items.
_CLASS = r"\[\^?(?:[^\\\[\]]|\\[nrt\\\[\]-])+\][+*?]?"
_CLASS_SEQUENCE = re.compile(f"(?:{_CLASS})+")


def regex_grammar(regex: str) -> str | None:
    """llama.cpp's GBNF grammar for `regex` when it is a sequence of character classes, else None."""
    if _CLASS_SEQUENCE.fullmatch(regex) is None:
        return None
    return "root ::= " + " ".join(re.findall(_CLASS, regex))


def resolve_gguf(model: str) -> Path:
    """`embedded:<name>` (a GGUF shipped in a package) or the path of a .gguf file."""
    if model.startswith(EMBEDDED_PREFIX):
        directory, filename = embedded_gguf(model.removeprefix(EMBEDDED_PREFIX))
        return directory / filename
    path = Path(model)
    if not path.is_file():
        raise LlamaServerError(f"backend llama_cpp: model file {path} does not exist")
    return path


def server_binary() -> str:
    found = installed_tool(SERVER_BINARY)  # `make llama-server` puts it in the venv's bin/
    if found is None:
        raise LlamaServerError(
            f"backend llama_cpp needs llama.cpp's `{SERVER_BINARY}` in {scripts_dir()} or on PATH: run `make llama-server` "
            "(builds it into .venv/bin from pinned llama.cpp source), or set the backend to transformers"
        )
    return found


class LlamaServerBackend(OpenAIBackend):
    """A llama-server process of our own, one slot per concurrent request."""

    def __init__(self, config: LlamaCppSettings, model: str, startup_timeout_s: float = 60.0):
        self.gguf = resolve_gguf(model)
        binary = server_binary()
        slots = config.max_concurrency

        def command(port: int) -> list[str]:
            return [
                binary, "--model", str(self.gguf), "--host", "127.0.0.1", "--port", str(port),
                "--parallel", str(slots), "--ctx-size", str(slots * config.context_length),
                "--threads", str(os.cpu_count() or 1), "--jinja", "--no-webui",
            ]  # fmt: skip

        self.server = ServerProcess(SERVER_BINARY, command, LOG, LlamaServerError)
        self.process = self.server.process
        self.base_url = self.server.base_url
        self.server.wait_until_healthy(startup_timeout_s, str(self.gguf))
        super().__init__(served_settings(self.gguf.stem, self.base_url, config))
        # The GGUF is the model's identity: cached answers of another file are never reused.
        self.model_id = f"llama.cpp:{model}"

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body = super()._body(request)
        # Only temperature and top-p shape the distribution, as in the transformers backend:
        # switch off llama.cpp's default top-k 40 and min-p 0.05, and use its penalty's name.
        body.update(top_k=0, min_p=0.0, repeat_penalty=body.pop("repetition_penalty", 1.0))
        grammar = regex_grammar(request.response_regex) if request.response_regex is not None else None
        if grammar is not None:
            body["grammar"] = grammar
        return body

    def close(self) -> None:
        self.server.stop()
