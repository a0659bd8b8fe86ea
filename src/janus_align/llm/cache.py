"""Persistent request cache: every completed model call is committed the moment it finishes.

SQLite in WAL mode, one row per request key, written with INSERT OR IGNORE: a stage killed
with SIGKILL loses at most the calls that were in flight, and a re-run neither repeats a
completed call nor duplicates a row. Several processes (tune workers, two runs of one stage)
may share the file.

Claims keep those processes from paying for one request twice: before sending, the engine
claims the keys it is about to send (a row in `claims` with its owner and an expiry), sends only
those it got, and waits for the answers to keys another live owner holds (`llm/engine.py`). A
claim ends when its answer is committed, when the call fails (failures are not cached, so the
next asker sends it again) and when the cache closes. A live owner renews its claims while it
sends (`keep_claims_alive`); one that stops renewing (killed, frozen) loses them at expiry, and
one on this host whose process is gone loses them at once (a re-run after SIGKILL waits for
nothing).

An answer the stage that asked for it gave up on (every re-ask unusable: garbage, empty, off the
schema, cut at the length limit) is moved to `rejected` with the reason (`reject`): kept for the
record, never served by a look-up, so the next run asks again instead of failing the same way
on the cached answer once the API has healed.

Each answer records the model id the server returned (`returned_model`, a dated snapshot where
the request named an alias), what it cost at the prices of the run that paid for it (`cost_usd`)
and who paid (`payer`: the params section whose spending cap counts it, `teacher` or
`judge.llm`), so a resumed run knows what earlier runs spent (`spent_usd`). Caches written
before these columns existed get them on opening (empty: nothing recorded, nothing counted).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from janus_align.llm.types import ChatRequest, ChatResult

# What a completed answer holds, in the table that serves answers and in the one that keeps
# answers a stage gave up on (never served, kept for the record).
_ANSWER_FIELDS = """
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    created_at REAL NOT NULL,
    returned_model TEXT,
    cost_usd REAL,
    payer TEXT"""
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS completions (\n    key TEXT PRIMARY KEY,{_ANSWER_FIELDS}\n)",
    """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
)
""",
    f"CREATE TABLE IF NOT EXISTS rejected (\n    key TEXT NOT NULL,{_ANSWER_FIELDS},\n"
    "    reason TEXT NOT NULL,\n    rejected_at REAL NOT NULL\n)",
)
# Columns added after a table's first release: (table, column, type), added to older caches.
_ADDED_COLUMNS = (
    ("completions", "returned_model", "TEXT"),
    ("completions", "cost_usd", "REAL"),
    ("completions", "payer", "TEXT"),
    ("rejected", "returned_model", "TEXT"),
    ("rejected", "cost_usd", "REAL"),
    ("rejected", "payer", "TEXT"),
)
_ANSWER_COLUMNS = "key, model, request, text, prompt_tokens, completion_tokens, latency_s, created_at, returned_model, cost_usd, payer"
# Long enough that a renewal (every third of it) is never late on a loaded machine; short enough
# that work a frozen or remote dead owner held is taken over within a minute.
CLAIM_TTL_S = 60.0
_CHUNK = 500  # keys per statement (SQLite's variable limit is far above it)


def _chunks(keys: Iterable[str]) -> Iterator[list[str]]:
    keys = list(keys)
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _local_owner_gone(owner: str) -> bool:
    """True when `owner` (host:pid:token) names a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class RequestCache:
    """Key-value store of completed chat requests, and claims on the ones being sent.

    >>> cache = RequestCache(":memory:")
    >>> cache.get_many([]) == {}
    True
    >>> cache.claim(["k"]) == {"k"}
    True
    """

    def __init__(self, path: str | Path, claim_ttl_s: float = CLAIM_TTL_S):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.claim_ttl_s = claim_ttl_s
        # Who holds a claim: this host and process, and this cache (two engines in one process
        # are two owners).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process (not against power loss) and much faster.
        self._db.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._add_columns()

    def _add_columns(self) -> None:
        """Give a cache written by an older release the columns it lacks (ALTER TABLE, in place)."""
        with self._transaction():  # two processes opening one old cache: one adds, the other sees them
            for table, column, kind in _ADDED_COLUMNS:
                present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def get_many(self, keys: Iterable[str]) -> dict[str, ChatResult]:
        found: dict[str, ChatResult] = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT key, text, prompt_tokens, completion_tokens, latency_s, returned_model FROM completions "
                f"WHERE key IN ({marks})",
                chunk,
            )
            for key, text, prompt_tokens, completion_tokens, latency, returned in rows:
                found[key] = ChatResult(
                    text, prompt_tokens, completion_tokens, latency, cached=True, model=returned or ""
                )
        return found

    def put(
        self,
        key: str,
        model_id: str,
        request: ChatRequest,
        result: ChatResult,
        cost_usd: float = 0.0,
        payer: str | None = None,
    ) -> None:
        """Commit one successful result, with what it cost and who paid (failures are never
        cached, so they are retried)."""
        if not result.ok:
            return
        self._db.execute(
            f"INSERT OR IGNORE INTO completions ({_ANSWER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                model_id,
                json.dumps({"messages": list(request.messages), "seed": request.seed}, ensure_ascii=False),
                result.text,
                result.prompt_tokens,
                result.completion_tokens,
                result.latency_s,
                time.time(),
                result.model or None,
                cost_usd,
                payer,
            ),
        )

    def spent_usd(self, model_id: str, payer: str | None) -> float:
        """What every answer `payer` paid `model_id` for cost, rejected ones included (they were paid too)."""
        total = 0.0
        for table in ("completions", "rejected"):
            (spent,) = self._db.execute(
                f"SELECT COALESCE(SUM(cost_usd), 0) FROM {table} WHERE model = ? AND payer IS ?", (model_id, payer)
            ).fetchone()
            total += spent
        return total

    def reject(self, keys: Iterable[str], reason: str) -> int:
        """Move the answers of `keys` out of the look-ups into `rejected` (with `reason`); how many moved.

        A key asked again later gets a fresh call; its earlier answers stay in `rejected`, one row
        per rejection.
        """
        moved = 0
        now = time.time()
        with self._transaction():
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                moved += self._db.execute(
                    f"INSERT INTO rejected ({_ANSWER_COLUMNS}, reason, rejected_at) "
                    f"SELECT {_ANSWER_COLUMNS}, ?, ? FROM completions WHERE key IN ({marks})",
                    [reason, now, *chunk],
                ).rowcount
                self._db.execute(f"DELETE FROM completions WHERE key IN ({marks})", chunk)
        return moved

    def rejected_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]

    def claim(self, keys: Collection[str]) -> set[str]:
        """Claim `keys` for this cache; return those it now holds (the others are held elsewhere).

        A claim that expired, or whose owner is a process of this host that is gone, is taken.
        """
        now = time.time()
        held: set[str] = set()
        with self._transaction():
            self._db.execute("DELETE FROM claims WHERE expires_at < ?", (now,))
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                others = self._db.execute(
                    f"SELECT DISTINCT owner FROM claims WHERE owner != ? AND key IN ({marks})", [self.owner, *chunk]
                ).fetchall()
                for (owner,) in others:
                    if _local_owner_gone(owner):
                        self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))
                self._db.executemany(
                    "INSERT OR IGNORE INTO claims VALUES (?, ?, ?)",
                    [(key, self.owner, now + self.claim_ttl_s) for key in chunk],
                )
                rows = self._db.execute(
                    f"SELECT key FROM claims WHERE owner = ? AND key IN ({marks})", [self.owner, *chunk]
                )
                held.update(key for (key,) in rows)
        return held

    def held_elsewhere(self, keys: Collection[str]) -> set[str]:
        """The keys another owner holds an unexpired claim on."""
        held: set[str] = set()
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key FROM claims WHERE owner != ? AND expires_at >= ? AND key IN ({marks})",
                [self.owner, time.time(), *chunk],
            )
            held.update(key for (key,) in rows)
        return held

    def release(self, keys: Iterable[str] | None = None) -> None:
        """End this cache's claims on `keys` (all of them when None)."""
        if keys is None:
            self._db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
            return
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM claims WHERE owner = ? AND key IN ({marks})", [self.owner, *chunk])

    @contextlib.contextmanager
    def keep_claims_alive(self) -> Iterator[None]:
        """Renew this cache's claims every third of their lifetime while the block runs (a send)."""
        if self.path == ":memory:":  # no other process can see an in-memory cache
            yield
            return
        stop = threading.Event()

        def renew() -> None:
            # Its own connection: the engine's may be inside a statement on the main thread.
            db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            try:
                while not stop.wait(self.claim_ttl_s / 3):
                    db.execute(
                        "UPDATE claims SET expires_at = ? WHERE owner = ?", (time.time() + self.claim_ttl_s, self.owner)
                    )
            except sqlite3.Error:
                pass  # the file is gone (a test's tmp dir): nothing left to hold
            finally:
                db.close()

        thread = threading.Thread(target=renew, name="llm-cache-claims", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        """Release this cache's claims (what another process waits for, it now sends) and close."""
        with contextlib.suppress(sqlite3.Error):
            self.release()
        self._db.close()
