"""Reading and writing row files: JSONL (streamed), JSON (a list, or the official {id: row} map)
and parquet, with errors that name the file and line. Every stage reads and writes through here.

Rows that cross a stage boundary are pydantic models (`synth/rows.py`, `evaluate/rows.py`):
`read_rows` validates each one, so a renamed, missing or mistyped key fails naming the file and
line instead of reaching the next stage as a silent default; `write_jsonl` writes models and
plain dicts alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from janus_align.errors import JanusError

Row = dict[str, Any]
ModelT = TypeVar("ModelT", bound=BaseModel)


class RecordError(JanusError, ValueError):
    """A row file is unreadable; the message names the file and, for JSONL, the line."""


def iter_jsonl(path: str | Path) -> Iterator[Row]:
    """Stream the rows of a JSONL file, skipping blank lines."""
    for _, row in _numbered_jsonl(Path(path)):
        yield row


def iter_numbered_jsonl(path: str | Path) -> Iterator[tuple[int, Row]]:
    """(line number, row) of a JSONL file's objects, for readers whose own errors name the line."""
    return _numbered_jsonl(Path(path))


def _numbered_jsonl(path: Path) -> Iterator[tuple[int, Row]]:
    # Lines are split as bytes and decoded one by one, so a bad byte is reported at its own line
    # (a text reader decodes ahead in blocks and would blame a line before it).
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = decode_utf8(raw, f"{path}:{number}", offset)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path}:{number}: broken JSON line ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise RecordError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def decode_utf8(raw: bytes, where: str, offset: int = 0, error: type[Exception] = RecordError) -> str:
    """`raw` as UTF-8 text, or `error` naming `where` and the byte offset (in the file) of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{where}: not UTF-8 text (byte {offset + exc.start} is {raw[exc.start]:#04x}); save it as UTF-8"
        ) from None


def read_text(path: str | Path, error: type[Exception] = RecordError, missing: str = "file not found") -> str:
    """A user's text file (YAML, JSON) as UTF-8; `error` naming the file when it is missing, unreadable
    or not UTF-8 (with the byte offset), never a raw OSError or UnicodeDecodeError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return decode_utf8(raw, str(path), error=error)


def iter_records(path: str | Path) -> Iterator[Row]:
    """Rows of a .jsonl, .json or .parquet file.

    A JSON file may hold a list of rows, or a mapping {id: row} as the official evaluation
    outputs do (the id is then kept under `id`).
    """
    for _, row in iter_located(path):
        yield row


def iter_located(path: str | Path) -> Iterator[tuple[str, Row]]:
    """(where, row) for each row of `iter_records`: `where` is what an error about the row names,
    `FILE:LINE` for JSONL (blank lines counted), `FILE: row N` (1-based) or `FILE: id KEY` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for number, row in _numbered_jsonl(path):
            yield f"{path}:{number}", row
    elif suffix == ".json":
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}:{exc.lineno}: broken JSON ({exc.msg})") from None
        if isinstance(data, dict):
            for key, row in data.items():
                yield (
                    f"{path}: id {key!r}",
                    ({"id": key, **row} if isinstance(row, dict) else {"id": key, "value": row}),
                )
        elif isinstance(data, list):
            for number, row in enumerate(data, start=1):
                if not isinstance(row, dict):
                    raise RecordError(f"{path}: row {number} is not an object")
                yield f"{path}: row {number}", row
        else:
            raise RecordError(f"{path}: expected a list of rows or an {{id: row}} mapping")
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        number = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    number += 1
                    yield f"{path}: row {number}", row
        except (pa.ArrowException, OSError) as exc:  # not parquet, truncated, or a corrupt page
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RecordError(f"{path}: not a readable parquet file after {number} rows ({reason})") from None
    else:
        raise RecordError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json or .parquet)")


def read_records(path: str | Path) -> list[Row]:
    return list(iter_records(path))


def iter_rows(path: str | Path, model: type[ModelT]) -> Iterator[tuple[str, ModelT]]:
    """(where, row as `model`) for each row of `iter_located`; a row that does not fit raises
    RecordError naming the file, the line (or row or id) and the key."""
    for where, raw in iter_located(path):
        try:
            yield where, model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "<row>"
            raise RecordError(f"{where}: {key}: {first['msg']}") from None


def read_rows(path: str | Path, model: type[ModelT]) -> list[ModelT]:
    """Every row of a row file as `model`; a missing file or a bad row raises RecordError naming it."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: not found (run the stage that writes it first)")
    return [row for _, row in iter_rows(path, model)]


def write_jsonl(path: str | Path, rows: Iterable[Row | BaseModel]) -> int:
    """Write rows (dicts or pydantic models) atomically (temp file + rename): readers never see a
    half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    with partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            plain = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
            handle.write(json.dumps(plain, ensure_ascii=False) + "\n")
            count += 1
    os.replace(partial, path)
    return count


def write_json(path: str | Path, value: Any) -> None:
    """Write a small JSON file (metrics, summaries) atomically, pretty-printed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def read_json_object(path: str | Path, missing: str = "not found", error: type[Exception] = RecordError) -> Row:
    """The object a small JSON file holds (a record, a leaderboard); `error` naming the file, and
    the line for broken JSON, when it is missing (`FILE: {missing}`), broken or not an object."""
    path = Path(path)
    try:
        data = json.loads(read_text(path, error, missing))
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}: broken JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
