"""The simulated OpenAI API as an ASGI app, and `SimulatedAPI`, which serves it on loopback.

    with SimulatedAPI(rpm=500, tpm=200_000, latency_median_s=0.05, batch_complete_after_s=1) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="sim")
        ...
        api.stats()  # requests, 429s, tokens, per-endpoint counts, batch requests

A double of an external service for tests and benchmarks: everything of ours (the openai SDK,
the backends, the cache) runs for real against it over HTTP. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import math
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from janus_align.simulated_api.answers import chat_completion, prompt_tokens
from janus_align.simulated_api.batches import BatchSettings, Store
from janus_align.simulated_api.limits import RateLimiter, duration


@dataclass
class SimSettings:
    """How the simulated account behaves (None for a limit: unlimited)."""

    rpm: float | None = None
    tpm: float | None = None
    latency_median_s: float = 0.05
    latency_sigma: float = 0.5
    batch_complete_after_s: float = 2.0
    batch_failure_fraction: float = 0.0
    batch_expire_fraction: float = 0.0
    seed: int = 0
    limit_window_s: float = 60.0  # how much of a minute's allowance the limits let through at once


def _error(
    status: int, message: str, kind: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class _Simulator:
    """State shared by the routes: limits, counters, the Batch API store."""

    def __init__(self, settings: SimSettings):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        settings = self.settings
        self.limiter = RateLimiter(settings.rpm, settings.tpm, settings.limit_window_s)
        self.rng = random.Random(settings.seed)
        self.store = Store(
            settings.seed,
            BatchSettings(
                settings.batch_complete_after_s, settings.batch_failure_fraction, settings.batch_expire_fraction
            ),
        )
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.endpoints: Counter[str] = Counter()
        self.completions = 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            batches = self.store.batches.values()
            return {
                "requests": self.counts["requests"],
                "ok": self.counts["ok"],
                "rate_limited": self.counts["429"],
                "prompt_tokens": self.counts["prompt_tokens"],
                "completion_tokens": self.counts["completion_tokens"],
                "endpoints": dict(self.endpoints),
                "batches": len(self.store.batches),
                "batch_requests": sum(len(batch.lines) for batch in batches),
                "files": len(self.store.files),
                "settings": asdict(self.settings),
            }

    def latency(self) -> float:
        if self.settings.latency_median_s <= 0:
            return 0.0
        return self.rng.lognormvariate(math.log(self.settings.latency_median_s), self.settings.latency_sigma)

    def count(self, request: Request) -> None:
        route = request.scope.get("route")
        with self.lock:
            self.endpoints[f"{request.method} {getattr(route, 'path', request.url.path)}"] += 1

    # --- chat completions --------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        self.count(request)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        if not isinstance(body, dict) or not body.get("model") or not isinstance(body.get("messages"), list):
            return _error(400, "'model' and 'messages' are required.", "invalid_request_error")
        needed = prompt_tokens(body["messages"]) + int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        wait, headers = self.limiter.admit(needed)
        with self.lock:
            self.counts["requests"] += 1
        if wait > 0:
            with self.lock:
                self.counts["429"] += 1
            # Retry-After in whole seconds (the header's form); retry-after-ms, which the openai
            # SDK reads first, in milliseconds.
            headers |= {
                "retry-after": str(max(1, math.ceil(wait))),
                "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
            }
            return _error(
                429,
                f"Rate limit reached on this simulated account. Please try again in {duration(wait)}.",
                "requests",
                "rate_limit_exceeded",
                headers,
            )
        await asyncio.sleep(self.latency())
        with self.lock:
            self.completions += 1
            number = self.completions
        answer = chat_completion(body, self.settings.seed, number, int(time.time()))
        with self.lock:
            self.counts["ok"] += 1
            self.counts["prompt_tokens"] += answer["usage"]["prompt_tokens"]
            self.counts["completion_tokens"] += answer["usage"]["completion_tokens"]
        headers["x-request-id"] = f"req_sim{number:012d}"
        return JSONResponse(answer, headers=headers)

    # --- files ---------------------------------------------------------------------------------
    async def create_file(self, request: Request) -> Response:
        self.count(request)
        raw = await request.body()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + request.headers.get("content-type", "").encode() + b"\r\n\r\n" + raw
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = (part.get_filename(), payload)
        if "file" not in fields or "purpose" not in fields:
            return _error(400, "A multipart body with 'file' and 'purpose' is required.", "invalid_request_error")
        purpose = fields["purpose"][1].decode()
        if purpose not in ("batch", "fine-tune", "assistants", "user_data", "evals", "vision"):
            return _error(400, f"Invalid purpose {purpose!r}.", "invalid_request_error")
        with self.lock:
            stored = self.store.add_file(fields["file"][0] or "upload.jsonl", purpose, fields["file"][1])
        return JSONResponse(stored.as_object())

    def _found(self, request: Request, kind: str) -> tuple[Any, Response | None]:
        """(the file or batch the path names, None), or (None, the 404 to answer)."""
        self.count(request)
        key = "file_id" if kind == "File" else "batch_id"
        table: dict[str, Any] = self.store.files if kind == "File" else self.store.batches
        found = table.get(request.path_params[key])
        if found is None:
            return None, _error(404, f"No such {kind} object: {request.path_params[key]}", "invalid_request_error")
        return found, None

    async def get_file(self, request: Request) -> Response:
        stored, missing = self._found(request, "File")
        return missing or JSONResponse(stored.as_object())

    async def file_content(self, request: Request) -> Response:
        stored, missing = self._found(request, "File")
        return missing or Response(stored.data, media_type="application/octet-stream")

    async def delete_file(self, request: Request) -> Response:
        self.count(request)
        with self.lock:
            stored = self.store.files.pop(request.path_params["file_id"], None)
        if stored is None:
            return _error(404, f"No such File object: {request.path_params['file_id']}", "invalid_request_error")
        return JSONResponse({"id": stored.id, "object": "file", "deleted": True})

    async def list_files(self, request: Request) -> Response:
        self.count(request)
        data = [stored.as_object() for stored in self.store.files.values()]
        return JSONResponse({"object": "list", "data": data, "has_more": False})

    # --- batches -------------------------------------------------------------------------------
    async def create_batch(self, request: Request) -> Response:
        self.count(request)
        body = await request.json()
        endpoint = body.get("endpoint")
        if endpoint not in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions"):
            return _error(400, f"Invalid endpoint {endpoint!r}.", "invalid_request_error")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be '24h'.", "invalid_request_error")
        stored = self.store.files.get(str(body.get("input_file_id")))
        if stored is None:
            return _error(400, f"No such File object: {body.get('input_file_id')}", "invalid_request_error")
        if stored.purpose != "batch":
            return _error(400, "The input file must be uploaded with purpose 'batch'.", "invalid_request_error")
        metadata = body.get("metadata")
        if metadata is not None and len(metadata) > 16:
            return _error(400, "metadata holds at most 16 pairs.", "invalid_request_error")
        with self.lock:
            batch = self.store.create_batch(stored, endpoint, "24h", metadata)
            return JSONResponse(batch.as_object(time.monotonic()))

    async def get_batch(self, request: Request) -> Response:
        batch, missing = self._found(request, "Batch")
        if missing:
            return missing
        with self.lock:
            return JSONResponse(batch.as_object(time.monotonic()))

    async def cancel_batch(self, request: Request) -> Response:
        batch, missing = self._found(request, "Batch")
        if missing:
            return missing
        with self.lock:
            if not batch.cancel(time.monotonic()):
                return _error(409, f"Cannot cancel a batch with status {batch.status}.", "invalid_request_error")
            return JSONResponse(batch.as_object(time.monotonic()))

    async def list_batches(self, request: Request) -> Response:
        self.count(request)
        limit = int(request.query_params.get("limit", 20))
        after = request.query_params.get("after")
        with self.lock:
            ids = list(reversed(self.store.batches))  # newest first, as OpenAI lists them
            start = ids.index(after) + 1 if after in ids else 0
            page = ids[start : start + limit]
            now = time.monotonic()
            data = [self.store.batches[batch_id].as_object(now) for batch_id in page]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
                "has_more": start + limit < len(ids),
            }
        )

    async def sim_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def sim_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})


def build_app(settings: SimSettings) -> tuple[Starlette, _Simulator]:
    """The ASGI app and the simulator state behind it."""
    sim = _Simulator(settings)
    routes = [
        Route("/v1/chat/completions", sim.chat, methods=["POST"]),
        Route("/v1/files", sim.create_file, methods=["POST"]),
        Route("/v1/files", sim.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", sim.get_file, methods=["GET"]),
        Route("/v1/files/{file_id}", sim.delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", sim.file_content, methods=["GET"]),
        Route("/v1/batches", sim.create_batch, methods=["POST"]),
        Route("/v1/batches", sim.list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", sim.get_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", sim.cancel_batch, methods=["POST"]),
        Route("/_sim/stats", sim.sim_stats, methods=["GET"]),
        Route("/_sim/reset", sim.sim_reset, methods=["POST"]),
    ]
    return Starlette(routes=routes), sim


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def uvicorn_config(app: Starlette, port: int) -> uvicorn.Config:
    # No access log: at hundreds of requests a second it would cost more CPU than the answers.
    return uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


class SimulatedAPI:
    """The simulated OpenAI API served on a free loopback port by a background thread."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        latency_median_s: float = 0.05,
        latency_sigma: float = 0.5,
        batch_complete_after_s: float = 2.0,
        batch_failure_fraction: float = 0.0,
        batch_expire_fraction: float = 0.0,
        seed: int = 0,
        port: int | None = None,
        limit_window_s: float = 60.0,
    ):
        self.settings = SimSettings(
            rpm,
            tpm,
            latency_median_s,
            latency_sigma,
            batch_complete_after_s,
            batch_failure_fraction,
            batch_expire_fraction,
            seed,
            limit_window_s,
        )
        self.app, self._sim = build_app(self.settings)
        self.port = port or free_port()
        self._server = uvicorn.Server(uvicorn_config(self.app, self.port))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        """Requests, 429s, tokens, per-endpoint counts, batches and batch requests so far."""
        return self._sim.stats()

    def reset(self) -> None:
        """Forget every request, file and batch, and refill the rate-limit buckets."""
        self._sim.reset()

    def __enter__(self) -> SimulatedAPI:
        self._thread = threading.Thread(target=self._server.run, name="simulated-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the simulated API did not start on 127.0.0.1:{self.port}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextlib.contextmanager
def serve_in_subprocess(settings: SimSettings) -> Iterator[str]:
    """The simulator in a process of its own (so a benchmark measures the client, not a server
    sharing its interpreter lock); yields its base_url, reads `/_sim/stats` for the counts."""
    argv = [sys.executable, "-m", "janus_align.simulated_api", "--seed", str(settings.seed)]
    for flag, value in (
        ("--rpm", settings.rpm),
        ("--tpm", settings.tpm),
        ("--latency-median", settings.latency_median_s),
        ("--latency-sigma", settings.latency_sigma),
        ("--batch-complete-after", settings.batch_complete_after_s),
        ("--batch-failure-fraction", settings.batch_failure_fraction),
        ("--batch-expire-fraction", settings.batch_expire_fraction),
        ("--limit-window", settings.limit_window_s),
    ):
        if value is not None:
            argv += [flag, str(value)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "http://" not in line:
            raise RuntimeError(f"the simulated API did not start: {line!r}")
        yield line.split()[-1]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def remote_stats(base_url: str) -> dict[str, Any]:
    """`/_sim/stats` of a simulator at `base_url` (one in another process)."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_sim/stats", timeout=10) as response:
        stats: dict[str, Any] = json.loads(response.read())
    return stats
