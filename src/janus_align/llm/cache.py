"""Persistent request cache: every completed model call is committed the moment it finishes.

SQLite in WAL mode, one row per request key, written with INSERT OR IGNORE: a stage killed
with SIGKILL loses at most the calls that were in flight, and a re-run neither repeats a
completed call nor duplicates a row. Several processes (tune workers) may share the file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from janus_align.llm.types import ChatRequest, ChatResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    created_at REAL NOT NULL
)
"""


class RequestCache:
    """Key-value store of completed chat requests.

    >>> cache = RequestCache(":memory:")
    >>> cache.get_many([]) == {}
    True
    """

    def __init__(self, path: str | Path):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process (not against power loss) and much faster.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, ChatResult]:
        keys = list(keys)
        found: dict[str, ChatResult] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, text, prompt_tokens, completion_tokens, latency_s FROM completions WHERE key IN ({marks})",
                chunk,
            )
            for key, text, prompt_tokens, completion_tokens, latency in rows:
                found[key] = ChatResult(text, prompt_tokens, completion_tokens, latency, cached=True)
        return found

    def put(self, key: str, model_id: str, request: ChatRequest, result: ChatResult) -> None:
        """Commit one successful result (failures are never cached, so they are retried)."""
        if not result.ok:
            return
        self._db.execute(
            "INSERT OR IGNORE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                model_id,
                json.dumps({"messages": list(request.messages), "seed": request.seed}, ensure_ascii=False),
                result.text,
                result.prompt_tokens,
                result.completion_tokens,
                result.latency_s,
                time.time(),
            ),
        )

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        self._db.close()
