"""The responses file: what a candidate answered to each bench prompt.

Ours (`artifacts/eval/responses/<model>.jsonl`, written by the generate stage) has one
`rows.ResponseRow` per bench item. The official inference output is a JSON map
`{id: {"response": ..., ...}}` (`rows.OfficialResponse`); `records` turns that into rows with
`id`, so both load here the same way, a renamed or missing `response` key failing with the file
and line (or id) named.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def load_candidate_responses(names: Sequence[str], stage: str) -> dict[str, dict[str, Response]]:
    """{candidate: its bench answers}; missing files are one JanusError naming them all and the command that writes them."""
    from janus_align import paths

    missing = [name for name in names if not paths.responses_file(name).is_file()]
    if missing:
        raise JanusError(
            f"{stage}: {', '.join(str(paths.responses_file(name)) for name in missing)} missing "
            f"(run `janus generate --model {missing[0]}` first)"
        )
    return {name: load_responses(paths.responses_file(name)) for name in names}
