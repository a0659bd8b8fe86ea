"""The responses file: what a candidate answered to each bench prompt.

Ours (`artifacts/eval/responses/<model>.jsonl`, written by the generate stage) has one
`rows.ResponseRow` per bench item. The official inference output is a JSON map
`{id: {"response": ..., ...}}` (`rows.OfficialResponse`); `records` turns that into rows with
`id`, so both load here the same way, a renamed or missing `response` key failing with the file
and line (or id) named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from janus_align.errors import JanusError
from janus_align.evaluate.rows import OfficialResponse, ResponseRow
from janus_align.records import iter_rows


class ResponsesFileError(JanusError, ValueError):
    """A responses file repeats an id."""


@dataclass(frozen=True)
class Response:
    """One candidate answer. `error` is set when generation failed (the answer is then not judged)."""

    id: str
    response: str
    error: str | None = None


def load_responses(path: str | Path) -> dict[str, Response]:
    """{id: Response} from our JSONL (strict `ResponseRow`s) or the official {id: {"response": ...}} JSON."""
    path = Path(path)
    layout: type[ResponseRow | OfficialResponse] = ResponseRow if path.suffix.lower() == ".jsonl" else OfficialResponse
    found: dict[str, Response] = {}
    for where, row in iter_rows(path, layout):
        error = row.error
        if row.response is None and error is None:
            # The official scripts store None for a request that failed: keep it, unjudged.
            error = "no response"
        if row.id in found:
            raise ResponsesFileError(f"{where}: duplicate id {row.id!r}")
        found[row.id] = Response(row.id, row.response or "", error or None)
    return found
