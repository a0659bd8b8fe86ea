"""The Batch API of the simulated server: files and batches, their lifecycle computed from the clock.

A batch's life takes `complete_after_s` (T): validating for the first tenth, in_progress while
its requests finish one by one at random times over the next eight tenths, finalizing for the
last tenth, then completed. Because the state is a function of the time, a client polling at
any moment sees consistent `request_counts`, and no background task is needed.

- A bad input file (not JSONL, a line without custom_id/method/url/body, a duplicate
  custom_id, a url other than the batch's endpoint, two models) ends `failed` with `errors`.
- `failure_fraction` of the requests fail: error lines (`response.status_code` 500) in the
  error file.
- `expire_fraction` of the requests never finish: the batch ends `expired` when its window
  closes; the output file holds what finished, the error file the rest (`error.code`
  `batch_expired`), as OpenAI does.
- `cancel` moves to cancelling, then cancelled; the output holds what finished before it.
- Output lines are written in shuffled order (OpenAI guarantees no order).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from janus_align.simulated_api.answers import chat_completion, snapshot_of

MAX_REQUESTS_PER_FILE = 50_000
FINAL = ("completed", "failed", "expired", "cancelled")


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def as_object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class BatchSettings:
    complete_after_s: float = 2.0
    failure_fraction: float = 0.0
    expire_fraction: float = 0.0


@dataclass
class _Line:
    custom_id: str
    body: dict[str, Any]
    finishes_at: float | None  # seconds after creation; None: never (expires)
    fails: bool


def _validate(data: bytes, endpoint: str) -> tuple[list[_Line], list[dict[str, Any]]]:
    """The requests of an input file, or the errors that fail the batch (line numbers from 1)."""
    lines: list[_Line] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()

    def error(code: str, message: str, line: int | None, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "line": line, "param": param})

    rows = data.decode("utf-8", errors="replace").splitlines()
    if not any(row.strip() for row in rows):
        error("empty_file", "The input file is empty.", None)
    if len(rows) > MAX_REQUESTS_PER_FILE:
        error("too_many_requests", f"A batch holds at most {MAX_REQUESTS_PER_FILE} requests.", None)
    for number, row in enumerate(rows, start=1):
        if not row.strip():
            continue
        try:
            item = json.loads(row)
        except json.JSONDecodeError:
            error("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        if not isinstance(item, dict):
            error("invalid_json_line", "This line is not a JSON object.", number)
            continue
        missing = [key for key in ("custom_id", "method", "url", "body") if key not in item]
        if missing:
            error("missing_required_parameter", f"Missing required parameter: {missing[0]!r}.", number, missing[0])
            continue
        if item["custom_id"] in seen:
            error("duplicate_custom_id", "The custom_id for this request is a duplicate of another request.", number)
        if item["method"] != "POST":
            error("invalid_method", "The method must be POST.", number, "method")
        if item["url"] != endpoint:
            error("invalid_url", f"The url must match the batch's endpoint {endpoint}.", number, "url")
        model = item["body"].get("model") if isinstance(item["body"], dict) else None
        if not model:
            error("missing_required_parameter", "Missing required parameter: 'body.model'.", number, "body.model")
        models.add(str(model))
        if len(models) > 1:
            error("mismatched_model", "All requests of a batch must use the same model.", number, "body.model")
        seen.add(str(item["custom_id"]))
        lines.append(_Line(str(item["custom_id"]), item["body"] if isinstance(item["body"], dict) else {}, None, False))
    return lines, errors


class SimBatch:
    """One batch; `refresh(now)` brings its status, counts and files up to the clock."""

    def __init__(
        self,
        batch_id: str,
        input_file: StoredFile,
        endpoint: str,
        completion_window: str,
        metadata: dict[str, str] | None,
        settings: BatchSettings,
        rng: random.Random,
        store: Store,
    ):
        self.id = batch_id
        self.input_file_id = input_file.id
        self.endpoint = endpoint
        self.completion_window = completion_window
        self.metadata = metadata
        self.settings = settings
        self.rng = rng
        self.store = store
        self.started = time.monotonic()
        self.created_at = int(time.time())
        self.lines, self.errors = _validate(input_file.data, endpoint)
        total = settings.complete_after_s
        for line in self.lines:
            if rng.random() >= settings.expire_fraction:
                line.finishes_at = total * (0.1 + 0.8 * rng.random())
            line.fails = rng.random() < settings.failure_fraction
        self.model = snapshot_of(str(self.lines[0].body.get("model", ""))) if self.lines else None
        self.status = "validating"
        self.times: dict[str, int] = {}
        self.cancel_requested_at: float | None = None
        self.output_file_id: str | None = None
        self.error_file_id: str | None = None
        self.usage: dict[str, Any] | None = None

    def _mark(self, status: str, offset: float) -> None:
        self.status = status
        self.times[f"{status}_at"] = self.created_at + int(offset)

    def _finished(self, elapsed: float) -> list[_Line]:
        return [line for line in self.lines if line.finishes_at is not None and line.finishes_at <= elapsed]

    def cancel(self, now: float) -> bool:
        """Ask to cancel; False when the batch has already ended."""
        self.refresh(now)
        if self.status in FINAL or self.status == "finalizing":
            return False
        self.cancel_requested_at = now - self.started
        self._mark("cancelling", self.cancel_requested_at)
        return True

    def refresh(self, now: float) -> None:
        if self.status in FINAL:
            return
        total = self.settings.complete_after_s
        elapsed = now - self.started
        if self.cancel_requested_at is not None:
            # Cancelling takes a tenth of the batch's time (OpenAI: up to 10 minutes).
            if elapsed >= self.cancel_requested_at + 0.1 * total:
                self._write_results(self.cancel_requested_at, expired=False)
                self._mark("cancelled", elapsed)
            return
        if elapsed < 0.1 * total:
            return
        if self.errors:
            self._mark("failed", 0.1 * total)
            return
        if self.status == "validating":
            self._mark("in_progress", 0.1 * total)
        if elapsed < 0.9 * total:
            return
        if any(line.finishes_at is None for line in self.lines):
            self._write_results(0.9 * total, expired=True)
            self._mark("expired", 0.9 * total)
            return
        if self.status == "in_progress":
            self._mark("finalizing", 0.9 * total)
        if elapsed >= total:
            self._write_results(total, expired=False)
            self._mark("completed", total)

    def _write_results(self, elapsed: float, expired: bool) -> None:
        finished = {id(line) for line in self._finished(elapsed)}
        outputs: list[str] = []
        errors: list[str] = []
        usage = {"input_tokens": 0, "output_tokens": 0}
        for number, line in enumerate(self.lines):
            request_id = f"req_sim{self.id[-8:]}{number:06d}"
            record: dict[str, Any] = {"id": f"batch_req_{self.id[-8:]}{number:06d}", "custom_id": line.custom_id}
            if id(line) not in finished:
                if expired:
                    record["response"] = None
                    record["error"] = {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the completion window expired.",
                    }
                    errors.append(json.dumps(record))
                continue
            if line.fails:
                record["response"] = {
                    "status_code": 500,
                    "request_id": request_id,
                    "body": {"error": {"message": "The server had an error (simulated).", "type": "server_error"}},
                }
                record["error"] = None
                errors.append(json.dumps(record))
                continue
            body = chat_completion(line.body, self.store.seed, self.store.next_number(), self.created_at)
            usage["input_tokens"] += body["usage"]["prompt_tokens"]
            usage["output_tokens"] += body["usage"]["completion_tokens"]
            record["response"] = {"status_code": 200, "request_id": request_id, "body": body}
            record["error"] = None
            outputs.append(json.dumps(record))
        self.rng.shuffle(outputs)
        self.rng.shuffle(errors)
        if outputs:
            self.output_file_id = self.store.add_file(f"{self.id}_output.jsonl", "batch_output", outputs).id
        if errors:
            self.error_file_id = self.store.add_file(f"{self.id}_error.jsonl", "batch_output", errors).id
        self.usage = {
            "input_tokens": usage["input_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["input_tokens"] + usage["output_tokens"],
        }

    def request_counts(self, now: float) -> dict[str, int]:
        if self.status == "validating" or self.status == "failed":
            return {"total": 0 if self.status == "validating" else len(self.lines), "completed": 0, "failed": 0}
        elapsed = now - self.started
        if self.cancel_requested_at is not None:
            elapsed = min(elapsed, self.cancel_requested_at)
        finished = self._finished(elapsed)
        failed = sum(line.fails for line in finished)
        if self.status == "expired":
            failed += sum(line.finishes_at is None for line in self.lines)
        return {
            "total": len(self.lines),
            "completed": len(finished) - sum(line.fails for line in finished),
            "failed": failed,
        }

    def as_object(self, now: float) -> dict[str, Any]:
        self.refresh(now)
        window_s = 24 * 3600
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.status == "failed" else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.times.get("in_progress_at"),
            "expires_at": self.created_at + window_s,
            "finalizing_at": self.times.get("finalizing_at"),
            "completed_at": self.times.get("completed_at"),
            "failed_at": self.times.get("failed_at"),
            "expired_at": self.times.get("expired_at"),
            "cancelling_at": self.times.get("cancelling_at"),
            "cancelled_at": self.times.get("cancelled_at"),
            "request_counts": self.request_counts(now),
            "usage": self.usage,
            "metadata": self.metadata,
        }


@dataclass
class Store:
    """Every file and batch of the simulated account."""

    seed: int
    settings: BatchSettings
    files: dict[str, StoredFile] = field(default_factory=dict)
    batches: dict[str, SimBatch] = field(default_factory=dict)
    numbers: int = 0

    def next_number(self) -> int:
        self.numbers += 1
        return self.numbers

    def add_file(self, filename: str, purpose: str, data: bytes | list[str]) -> StoredFile:
        content = data if isinstance(data, bytes) else ("\n".join(data) + "\n").encode("utf-8")
        stored = StoredFile(f"file-sim{self.next_number():012d}", filename, purpose, content, int(time.time()))
        self.files[stored.id] = stored
        return stored

    def create_batch(
        self, input_file: StoredFile, endpoint: str, completion_window: str, metadata: dict[str, str] | None
    ) -> SimBatch:
        batch_id = f"batch_sim{self.next_number():012d}"
        rng = random.Random(f"{self.seed}-{batch_id}")
        batch = SimBatch(batch_id, input_file, endpoint, completion_window, metadata, self.settings, rng, self)
        self.batches[batch_id] = batch
        return batch
