"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

Not a mock: the openai SDK talks HTTP to it exactly as to OpenAI, vLLM or llama.cpp. It answers
`POST /v1/chat/completions` after `latency_s`, and a test can script faults per request:
HTTP errors (429 with Retry-After, 500), a hang past the client's timeout, malformed JSON
content, or a 200 whose body is not JSON. It records what it received (per distinct body, with
arrival times and headers) so a test can prove which requests were sent, re-sent or never sent.

    with LoopbackServer(latency_s=0.2) as server:
        server.script(Fault.status_code(429, retry_after=1), prompt="q1")
        ... OpenAISettings(base_url=server.base_url, ...) ...
        assert server.count(prompt="q1") == 2

Run as a script (`python tests/loopback_server.py --latency 0.2`) it serves in its own process
(so a benchmark measures the client, not a server sharing its interpreter lock) and prints
`PORT <n>` once it listens; it stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MALFORMED_JSON = '{"answer": "this object never closes'
# A 200 whose body itself is cut short (a proxy or a server that died mid-write): not JSON at all.
BROKEN_BODY = b'{"id": "chatcmpl-broken", "choices": [{"message": {"content": "Feed'
HTML_ERROR_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass(frozen=True)
class Fault:
    """What the server does to one request instead of answering it normally."""

    kind: str  # "status" | "hang" | "malformed" | "broken_body" | "html"
    status: int = 200
    retry_after: float | None = None
    seconds: float = 0.0

    @classmethod
    def status_code(cls, status: int, retry_after: float | None = None) -> Fault:
        """Reply with an HTTP error (429 and 5xx are retried by the client)."""
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Say nothing for `seconds` (longer than the client's timeout), then answer."""
        return cls("hang", seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with content that is not JSON, whatever the response schema."""
        return cls("malformed")

    @classmethod
    def broken_body(cls) -> Fault:
        """Answer 200 (Content-Type application/json) with a response body that is not JSON."""
        return cls("broken_body")

    @classmethod
    def html(cls) -> Fault:
        """Answer 200 with an HTML error page, as a proxy in front of a dead server does."""
        return cls("html")


@dataclass
class Received:
    """One request as the server saw it."""

    at: float
    body: dict[str, Any]
    authorization: str | None
    outcome: str = "pending"  # "ok", "status 429", "hang", "malformed", "broken body", "disconnected"
    usage: dict[str, int] | None = None  # what the reply billed, when it was a 200

    @property
    def prompt(self) -> str:
        """The last user message: tests name requests by it."""
        users = [m["content"] for m in self.body.get("messages", []) if m.get("role") == "user"]
        return users[-1] if users else ""

    @property
    def body_key(self) -> str:
        return json.dumps(self.body, sort_keys=True)


def example_for_schema(schema: dict[str, Any]) -> Any:
    """A small value valid for the simple JSON schemas the pipeline uses (objects, strings, enums)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example_for_schema(props[name]) for name in schema.get("required", list(props))}
    if kind == "array":
        return [example_for_schema(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * max(schema.get("minLength", 0), min(2, schema.get("maxLength", 2)))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    return None


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of a request, in OpenAI's json_schema form or llama.cpp's json_object form."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return response_format["json_schema"]["schema"]
    if response_format.get("type") == "json_object":
        return response_format.get("schema") or {"type": "object"}
    return None


def default_answer(body: dict[str, Any]) -> str:
    """Schema requests get a valid JSON example; others get an echo of the prompt."""
    schema = requested_schema(body)
    if schema is not None:
        return json.dumps(example_for_schema(schema))
    users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    return f"echo: {users[-1] if users else ''}"


def count_tokens(text: str) -> int:
    """The server's token count: whitespace words (deterministic, so tests can predict costs)."""
    return len(text.split())


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when 32 clients connect at once.
    request_queue_size = 256


class LoopbackServer:
    """Threaded HTTP server speaking the OpenAI chat-completions protocol."""

    def __init__(
        self,
        latency_s: float = 0.0,
        answer: Callable[[dict[str, Any]], str] = default_answer,
        port: int = 0,
        accepts_json_schema: bool = True,
    ):
        self.latency_s = latency_s
        self.answer = answer
        # False: answer 422 to response_format json_schema, as llama-cpp-python's server does.
        self.accepts_json_schema = accepts_json_schema
        self.received: list[Received] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._faults: dict[str | None, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), _handler_for(self))
        self._thread: threading.Thread | None = None

    # ----- what a test uses
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *faults: Fault, prompt: str | None = None) -> None:
        """Queue faults for the next requests whose last user message is `prompt` (any if None)."""
        with self._lock:
            self._faults.setdefault(prompt, deque()).extend(faults)

    def clear_faults(self) -> None:
        """Drop every queued fault: the API has healed."""
        with self._lock:
            self._faults.clear()

    def count(self, prompt: str | None = None) -> int:
        """How many requests arrived (with this last user message, if given)."""
        with self._lock:
            return sum(1 for r in self.received if prompt is None or r.prompt == prompt)

    def counts_by_body(self) -> Counter[str]:
        with self._lock:
            return Counter(r.body_key for r in self.received)

    def counts_by_prompt(self) -> Counter[str]:
        with self._lock:
            return Counter(r.prompt for r in self.received)

    def arrivals(self, prompt: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.prompt == prompt]

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- what the handler uses
    def _arrive(self, body: dict[str, Any], authorization: str | None) -> tuple[Received, Fault | None]:
        record = Received(time.monotonic(), body, authorization)
        with self._lock:
            self.received.append(record)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            fault = None
            for key in (record.prompt, None):
                queue = self._faults.get(key)
                if queue:
                    fault = queue.popleft()
                    break
        return record, fault

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        # Headers and body go out in two writes; with Nagle on, the second waits for the
        # client's delayed ACK (~40 ms a request). Real servers set TCP_NODELAY too.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            record, fault = server._arrive(body, self.headers.get("Authorization"))
            try:
                self._reply(record, fault)
            except (BrokenPipeError, ConnectionResetError):
                record.outcome = "disconnected"  # the client gave up (timeout) or was killed
            finally:
                server._leave()

        def _reply(self, record: Received, fault: Fault | None) -> None:
            time.sleep(server.latency_s)
            response_format = record.body.get("response_format") or {}
            if not server.accepts_json_schema and response_format.get("type") == "json_schema":
                record.outcome = "status 422"
                detail = "response_format.type: Input should be 'text' or 'json_object'"
                self._send(422, {"error": {"message": detail, "type": "invalid_request_error", "code": None}})
                return
            if fault is not None and fault.kind == "status":
                record.outcome = f"status {fault.status}"
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                error = {"message": f"scripted {fault.status}", "type": "scripted", "code": None}
                self._send(fault.status, {"error": error}, headers)
                return
            if fault is not None and fault.kind in ("broken_body", "html"):
                record.outcome = fault.kind.replace("_", " ")
                page = BROKEN_BODY if fault.kind == "broken_body" else HTML_ERROR_PAGE
                self.send_response(200)
                self.send_header("Content-Type", "application/json" if fault.kind == "broken_body" else "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            if fault is not None and fault.kind == "hang":
                record.outcome = "hang"
                time.sleep(fault.seconds)
            text = MALFORMED_JSON if fault is not None and fault.kind == "malformed" else server.answer(record.body)
            prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in record.body.get("messages", []))
            completion_tokens = count_tokens(text)
            record.usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
            self._send(
                200,
                {
                    "id": f"chatcmpl-{id(record)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": record.body.get("model", ""),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {**record.usage, "total_tokens": prompt_tokens + completion_tokens},
                },
            )
            if record.outcome == "pending":
                record.outcome = "malformed" if fault is not None else "ok"

    return Handler


@contextlib.contextmanager
def serve_in_subprocess(latency_s: float) -> Iterator[str]:
    """A loopback server in its own process; yields its base_url (no fault scripting)."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--latency", str(latency_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"loopback server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with LoopbackServer(latency_s=args.latency, port=args.port) as server:
        print(f"PORT {server.port}", flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin (or exits)


if __name__ == "__main__":
    main()
