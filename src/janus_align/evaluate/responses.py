"""The responses file: what a candidate answered to each bench prompt.

Ours (`artifacts/eval/responses/<model>.jsonl`, written by the generate stage) has one row per
bench item: `{id, source, model, response, ...}`. The official inference output is a JSON map
`{id: {"response": ..., ...}}`; `records.iter_records` turns that into rows with `id`, so both
load here the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus_align.errors import JanusError
from janus_align.records import iter_located


class ResponsesFileError(JanusError, ValueError):
    """A responses file is unreadable or a row has no usable response."""


@dataclass(frozen=True)
class Response:
    """One candidate answer. `error` is set when generation failed (the answer is then not judged)."""

    id: str
    response: str
    error: str | None = None


def load_responses(path: str | Path) -> dict[str, Response]:
    """{id: Response} from our JSONL or the official {id: {"response": ...}} JSON."""
    path = Path(path)
    found: dict[str, Response] = {}
    for where, row in iter_located(path):
        if row.get("id") is None:
            raise ResponsesFileError(f"{where}: missing key 'id'")
        text: Any = row.get("response")
        error = row.get("error")
        if text is None and error is None:
            # The official scripts store None for a request that failed: keep it, unjudged.
            error = "no response"
        if text is not None and not isinstance(text, str):
            raise ResponsesFileError(f"{where}: 'response' must be a string, got {type(text).__name__}")
        key = str(row["id"])
        if key in found:
            raise ResponsesFileError(f"{where}: duplicate id {key!r}")
        found[key] = Response(key, text or "", str(error) if error else None)
    return found
