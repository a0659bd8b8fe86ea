"""Backend `openai_batch`: the openai backend's requests sent through OpenAI's Batch API.

Half the price and no rate-limit pressure, answered within the completion window (24 h) instead
of seconds. One `generate` call:

1. keys every request by its request-cache key (the `custom_id`: one per distinct request, so a
   result is joined to its request by id, never by its place in a file);
2. adopts the batches a killed or earlier run already submitted for any of those ids (the
   ledger, below), so nothing is submitted twice;
3. writes the rest as JSONL lines (`custom_id`, `method`, `url`, `body`: exactly the body the
   sync backend sends, `openai_backend.chat_body`), split at the API's per-file limits,
   uploads each file and creates its batch, recording the file id before the batch is created
   and the batch id once it is;
4. polls every `poll_interval_s` until each batch ends (completed, failed, expired, cancelled),
   then reads its output and error files: each success goes to `on_result` (the engine commits
   it to the request cache), and only what failed retryably (429, 5xx, expired, never run) is
   resubmitted, for at most `max_rounds` submissions in all. A batch refused for the model's
   enqueued-token limit (`token_limit_exceeded`) while others are queued is submitted again
   once they have ended, at no cost of a round (so a large stage drains through a small tier's
   queue instead of failing).

The ledger is a small SQLite file beside the request cache (`<cache>.batches.sqlite`): which
file ids and batch ids hold which custom ids, and whether their results were taken. A file id
recorded without a batch id (killed between the upload and the create) is looked up in
`GET /v1/batches` by its input file before anything is resubmitted.

The model id is the sync backend's (`openai_model_id`), so either backend serves what the other
cached. Cost: each answer's usage at the batch price (`Prices.batch`, applied by `open_engine`);
the batch's own `usage` is kept in the ledger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import openai

from janus_align.config.schema import OpenAIBatchSettings
from janus_align.llm.api_keys import api_key, server_url
from janus_align.llm.openai_backend import chat_body, openai_model_id, parse_completion
from janus_align.llm.progress import RequestProgress
from janus_align.llm.types import Admit, ChatRequest, ChatResult, ResultCallback

# The Batch API's limits per input file (module constants so tests can split small batches).
MAX_REQUESTS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200_000_000
ENDPOINT: Final = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Per-request statuses worth another submission (the SDK's own retry rule for sync calls).
RETRYABLE_STATUS = frozenset({408, 409, 429})
# A batch's error code when the model's enqueued prompt tokens would pass the organization's limit.
TOKEN_LIMIT_EXCEEDED = "token_limit_exceeded"

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS batch_files (
    input_file_id TEXT PRIMARY KEY,
    batch_id TEXT,
    model_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    uploaded_at REAL NOT NULL,
    status TEXT,
    collected INTEGER NOT NULL DEFAULT 0,
    usage TEXT
)
""",
    """
CREATE TABLE IF NOT EXISTS batch_members (
    custom_id TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    PRIMARY KEY (custom_id, input_file_id)
)
""",
    "CREATE INDEX IF NOT EXISTS batch_members_id ON batch_members (custom_id)",
)
_CHUNK = 500


def ledger_path(cache_path: str | Path) -> str:
    """Where the batch ledger of the request cache at `cache_path` lives (beside it)."""
    if str(cache_path) == ":memory:":
        return ":memory:"
    path = Path(cache_path)
    return str(path.with_name(f"{path.stem}.batches.sqlite"))


@dataclass
class SubmittedFile:
    """One input file of the ledger: its batch (None until created) and the custom ids it holds."""

    input_file_id: str
    batch_id: str | None
    round: int
    uploaded_at: float
    custom_ids: set[str] = field(default_factory=set)


class BatchLedger:
    """Durable record of what was submitted: a killed run's successor polls, never resubmits.

    >>> ledger = BatchLedger(":memory:")
    >>> ledger.record_file("file-1", "openai:x:m", 1, ["a", "b"])
    >>> ledger.record_batch("file-1", "batch-1")
    >>> [(f.batch_id, sorted(f.custom_ids)) for f in ledger.open_files(["a"], "openai:x:m")]
    [('batch-1', ['a', 'b'])]
    """

    def __init__(self, path: str | Path):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def record_file(self, input_file_id: str, model_id: str, round_: int, custom_ids: Iterable[str]) -> None:
        """An uploaded file, before its batch is created (so a kill in between is recoverable)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT INTO batch_files (input_file_id, model_id, round, uploaded_at) VALUES (?, ?, ?, ?)",
                (input_file_id, model_id, round_, time.time()),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO batch_members VALUES (?, ?)", [(cid, input_file_id) for cid in custom_ids]
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def record_batch(self, input_file_id: str, batch_id: str) -> None:
        self._db.execute("UPDATE batch_files SET batch_id = ? WHERE input_file_id = ?", (batch_id, input_file_id))

    def forget(self, input_file_id: str) -> None:
        """A file whose batch was never created: its ids are free to be submitted again."""
        self._db.execute("DELETE FROM batch_members WHERE input_file_id = ?", (input_file_id,))
        self._db.execute("DELETE FROM batch_files WHERE input_file_id = ?", (input_file_id,))

    def mark_ended(self, input_file_id: str, status: str, usage: dict[str, Any] | None, collected: bool) -> None:
        """The batch ended; `collected` once every one of its results went to a caller (successes
        into the request cache). One that also holds ids no caller asked for yet stays open, so
        the run that asks for them takes their answers from it instead of paying again."""
        self._db.execute(
            "UPDATE batch_files SET collected = ?, status = ?, usage = ? WHERE input_file_id = ?",
            (int(collected), status, None if usage is None else json.dumps(usage), input_file_id),
        )

    def open_files(self, custom_ids: Iterable[str], model_id: str) -> list[SubmittedFile]:
        """The uncollected files of `model_id` holding any of `custom_ids`, with all their members."""
        file_ids: set[str] = set()
        ids = list(custom_ids)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT DISTINCT m.input_file_id FROM batch_members m JOIN batch_files f USING (input_file_id) "
                f"WHERE f.collected = 0 AND f.model_id = ? AND m.custom_id IN ({marks})",
                [model_id, *chunk],
            )
            file_ids.update(fid for (fid,) in rows)
        found = []
        for fid in sorted(file_ids):
            batch_id, round_, uploaded_at = self._db.execute(
                "SELECT batch_id, round, uploaded_at FROM batch_files WHERE input_file_id = ?", (fid,)
            ).fetchone()
            members = {
                cid
                for (cid,) in self._db.execute("SELECT custom_id FROM batch_members WHERE input_file_id = ?", (fid,))
            }
            found.append(SubmittedFile(fid, batch_id, round_, uploaded_at, members))
        return found

    def close(self) -> None:
        self._db.close()


def batch_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """One request of an input file: a JSON object on one line."""
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def split_lines(
    lines: Iterable[tuple[str, bytes]], max_requests: int | None = None, max_bytes: int | None = None
) -> Iterator[list[tuple[str, bytes]]]:
    """`(custom_id, line)` pairs cut into files of at most `max_requests` lines and `max_bytes`
    bytes (the module limits when None), in order, each file as soon as it is full (so a stage
    holds one file's lines at a time). A line alone over the byte limit is an error."""
    max_requests = MAX_REQUESTS_PER_FILE if max_requests is None else max_requests
    max_bytes = MAX_BYTES_PER_FILE if max_bytes is None else max_bytes
    current: list[tuple[str, bytes]] = []
    size = 0
    for custom_id, line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"request {custom_id} is {len(line)} bytes, over the batch file limit of {max_bytes}")
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            yield current
            current, size = [], 0
        current.append((custom_id, line))
        size += len(line)
    if current:
        yield current


def read_jsonl(text: str) -> dict[str, dict[str, Any]]:
    """The lines of an output or error file, keyed by `custom_id` (a line that is not a JSON
    object with one is skipped: its request counts as unfinished and is submitted again)."""
    found: dict[str, dict[str, Any]] = {}
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            found[line["custom_id"]] = line
    return found


@dataclass
class LineOutcome:
    """What one output/error line means: the result, and whether a new submission may fix it."""

    result: ChatResult
    retry: bool = False
    rejected_json_schema: bool = False


def line_outcome(line: dict[str, Any], latency_s: float) -> LineOutcome:
    """A batch result line as a ChatResult; failures say whether to resubmit (429, 5xx, expiry)."""
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    error = line.get("error")
    status = response.get("status_code") if response else None
    if response is not None and status == 200 and not error:
        return LineOutcome(parse_completion(response.get("body"), latency_s))
    detail: Any = error
    if response is not None and isinstance(response.get("body"), dict):
        detail = response["body"].get("error", response["body"])
    message = detail.get("message") if isinstance(detail, dict) else detail
    code = detail.get("code") if isinstance(detail, dict) else None
    text = f"batch request failed (status {status}, {code or 'error'}): {message}"
    retry = status is None or status in RETRYABLE_STATUS or (isinstance(status, int) and status >= 500)
    rejected = status in (400, 422) and "response_format" in json.dumps(detail)
    return LineOutcome(ChatResult("", latency_s=latency_s, error=text), retry=retry, rejected_json_schema=rejected)


class OpenAIBatchBackend:
    """Chat completions through the Batch API; see the module docstring for the protocol."""

    def __init__(self, config: OpenAIBatchSettings, ledger: str | Path, model: str | None = None):
        self.config = config
        self.model = model or config.model
        self._api_key = api_key(config, self.model)
        self.model_id = openai_model_id(config, self.model)
        self.ledger = BatchLedger(ledger)
        self._schema_style = "json_schema"  # json_object once the server rejects json_schema

    def _client(self) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=self._api_key,
            base_url=server_url(self.config),
            max_retries=self.config.max_retries,
            timeout=self.config.timeout_s,
        )

    def generate(self, requests: list[ChatRequest], on_result: ResultCallback, admit: Admit | None = None) -> None:
        """Answer `requests` (each distinct one submitted once), `on_result(i, result)` as each
        batch ends. `admit(i)`, when given, is asked before request i first goes into a batch
        file (a resubmission is not asked again); from the first it refuses, nothing more is sent."""
        ids = [request.cache_key(self.model_id) for request in requests]
        where: dict[str, list[int]] = {}
        for i, cid in enumerate(ids):
            where.setdefault(cid, []).append(i)
        run = _Run(self, requests, where, on_result)
        with self._client() as client, run.progress():
            run.watch(self._adopt(client, set(where)))
            to_send = []
            for cid, indices in where.items():
                if cid in run.submissions:
                    continue
                # The spending cap: a refused request is not sent and gets no result; nor does
                # any after it (the Backend protocol), so the engine can say what was spent.
                if admit is not None and not admit(indices[0]):
                    break
                to_send.append(cid)
            while to_send or run.watched or run.deferred:
                if not to_send and not run.watched:  # the queue has drained: now they fit
                    to_send, run.deferred = run.deferred, []
                if to_send:
                    run.watch(self._submit(client, to_send, run, requests, where))
                    to_send = []
                to_send = run.poll(client)
                if run.watched and not to_send:
                    time.sleep(self.config.poll_interval_s)

    def _adopt(self, client: openai.OpenAI, wanted: set[str]) -> list[SubmittedFile]:
        """The batches already submitted for `wanted` ids; a file whose create call never
        returned is found by its input file id, or forgotten when no batch has it."""
        files = self.ledger.open_files(wanted, self.model_id)
        orphans = {f.input_file_id: f for f in files if f.batch_id is None}
        if orphans:
            oldest = min(f.uploaded_at for f in orphans.values())
            for batch in client.batches.list(limit=100):
                if batch.input_file_id in orphans:
                    orphans.pop(batch.input_file_id).batch_id = batch.id
                    self.ledger.record_batch(batch.input_file_id, batch.id)
                # Newest first: one created before the oldest upload cannot be ours.
                if not orphans or batch.created_at < oldest - 60:
                    break
            for fid in orphans:
                self.ledger.forget(fid)
        return [f for f in files if f.batch_id is not None]

    def _submit(
        self,
        client: openai.OpenAI,
        custom_ids: list[str],
        run: _Run,
        requests: list[ChatRequest],
        where: dict[str, list[int]],
    ) -> list[SubmittedFile]:
        lines = (
            (
                cid,
                batch_line(
                    cid, chat_body(requests[where[cid][0]], self.model, run.styles.get(cid, self._schema_style))
                ),
            )
            for cid in custom_ids
        )
        submitted = []
        for chunk in split_lines(lines):
            round_ = max(run.submissions.get(cid, 0) for cid, _ in chunk) + 1
            uploaded = client.files.create(
                file=("janus-batch.jsonl", b"".join(line for _, line in chunk), "application/jsonl"), purpose="batch"
            )
            members = {cid for cid, _ in chunk}
            self.ledger.record_file(uploaded.id, self.model_id, round_, members)
            batch = client.batches.create(
                input_file_id=uploaded.id,
                endpoint=ENDPOINT,
                completion_window=self.config.completion_window,
                metadata={"janus_model_id": self.model_id[:512], "janus_round": str(round_)},
            )
            self.ledger.record_batch(uploaded.id, batch.id)
            submitted.append(SubmittedFile(uploaded.id, batch.id, round_, time.time(), members))
        return submitted

    def close(self) -> None:
        self.ledger.close()


class _Run:
    """The state of one `generate` call: batches watched, submissions per id, what was delivered."""

    def __init__(
        self,
        backend: OpenAIBatchBackend,
        requests: list[ChatRequest],
        where: dict[str, list[int]],
        on_result: ResultCallback,
    ):
        self.backend = backend
        self.requests = requests
        self.where = where
        self.on_result = on_result
        self.watched: dict[str, SubmittedFile] = {}
        self.submissions: dict[str, int] = {}
        self.styles: dict[str, str] = {}
        self.delivered: set[str] = set()
        # Ids of batches refused for the model's enqueued-token limit while others were queued:
        # submitted again once those have ended (the refusal costs no round).
        self.deferred: list[str] = []
        self.server_done: dict[str, int] = {}
        self._progress: RequestProgress | None = None

    @property
    def _bar(self) -> RequestProgress:
        assert self._progress is not None
        return self._progress

    def progress(self) -> contextlib.closing[RequestProgress]:
        """The batches' own progress line (the engine's counts the requests), closed on leaving."""
        self._progress = RequestProgress(0, f"{self.backend.model} batches", unit="batch")
        return contextlib.closing(self._progress)

    def watch(self, files: list[SubmittedFile]) -> None:
        for submitted in files:
            self.watched[submitted.input_file_id] = submitted
            for cid in submitted.custom_ids & self.where.keys():
                self.submissions[cid] = max(self.submissions.get(cid, 0), submitted.round)
        if files:
            self._bar.extend(len(files), self._status())

    def deliver(self, cid: str, result: ChatResult) -> None:
        if cid in self.delivered:
            return
        self.delivered.add(cid)
        first, *repeats = self.where[cid]
        self.on_result(first, result)
        for i in repeats:  # the same request again in this call: sent and billed once
            self.on_result(i, dataclasses.replace(result, prompt_tokens=0, completion_tokens=0))

    def _status(self) -> str:
        if not self.watched:
            return "every batch ended"
        total = sum(len(f.custom_ids) for f in self.watched.values())
        return f"{sum(self.server_done.values())}/{total} requests done in {len(self.watched)} open batch(es)"

    def poll(self, client: openai.OpenAI) -> list[str]:
        """Look at every watched batch once; collect those that ended. Returns the ids to resubmit."""
        resubmit: list[str] = []
        for fid, submitted in list(self.watched.items()):
            assert submitted.batch_id is not None
            try:
                batch = client.batches.retrieve(submitted.batch_id)
            except openai.NotFoundError:
                batch = None  # another account's, or deleted: nothing to wait for, all to resubmit
            counts = batch.request_counts if batch is not None else None
            self.server_done[fid] = (counts.completed + counts.failed) if counts else 0
            if batch is not None and batch.status not in TERMINAL:
                continue
            resubmit += self._collect(client, submitted, batch)
            del self.watched[fid]
            self.server_done.pop(fid, None)
            usage = batch.usage.model_dump() if batch is not None and batch.usage is not None else None
            everyone = batch is None or submitted.custom_ids <= self.where.keys()
            self.backend.ledger.mark_ended(fid, batch.status if batch else "not_found", usage, everyone)
            self._bar.advance(ChatResult("", completion_tokens=usage["output_tokens"] if usage else 0))
        self._bar.extend(0, self._status())
        return resubmit

    def _collect(self, client: openai.OpenAI, submitted: SubmittedFile, batch: Any | None) -> list[str]:
        """Deliver an ended batch's results by custom_id (None: a batch the server does not
        know); return the ids worth resubmitting."""
        lines: dict[str, dict[str, Any]] = {}
        if batch is None:
            latency, why = 0.0, f"batch {submitted.batch_id} is unknown to the server"
        else:
            for file_id in (batch.error_file_id, batch.output_file_id):  # an output line wins over an error line
                if file_id:
                    with contextlib.suppress(openai.NotFoundError):  # deleted: its requests count as unfinished
                        lines.update(read_jsonl(client.files.content(file_id).text))
            latency = max(0.0, time.time() - float(batch.created_at))
            why = f"batch {batch.id} ended {batch.status}"
            if batch.errors is not None and batch.errors.data:
                why += ": " + "; ".join(str(e.message) for e in batch.errors.data[:3])
        resubmit = []
        codes = (
            {e.code for e in batch.errors.data} if batch is not None and batch.errors and batch.errors.data else set()
        )
        queue_full = batch is not None and batch.status == "failed" and TOKEN_LIMIT_EXCEEDED in codes
        for cid in sorted(submitted.custom_ids & self.where.keys()):
            if cid in self.delivered:
                continue
            if queue_full and len(self.watched) > 1:
                self.deferred.append(cid)
                self.submissions[cid] -= 1
                continue
            line = lines.get(cid)
            outcome = (
                line_outcome(line, latency)
                if line is not None
                else LineOutcome(ChatResult("", latency_s=latency, error=f"no result: {why}"), retry=True)
            )
            request = self.requests[self.where[cid][0]]
            if outcome.rejected_json_schema and request.response_schema is not None and cid not in self.styles:
                # A server without OpenAI's json_schema form: ask in the older json_object form.
                self.styles[cid] = self.backend._schema_style = "json_object"
                outcome.retry = True
            if outcome.result.ok or not outcome.retry or self.submissions.get(cid, 0) >= self.backend.config.max_rounds:
                self.deliver(cid, outcome.result)
            else:
                resubmit.append(cid)
        return resubmit
