"""Every user file a stage or tool reads, broken the ways files get broken (bytes that are not
UTF-8, a parquet file cut short or not parquet at all, a broken JSON line, a repeated YAML key):
`janus` exits 2 with one line naming the file and the line or byte offset, never a traceback,
and writes nothing it would have to undo."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import make_project, run_janus

LATIN1 = "caf\xe9".encode("latin-1")


def _append_line(path: Path, raw: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(raw)


def _non_utf8_instruction(project: Path) -> tuple[list[str], str]:
    pool = project / "data/instructions/pool.jsonl"
    lines = pool.read_bytes().count(b"\n")
    offset = pool.stat().st_size + len(b'{"instruction": "')
    _append_line(pool, b'{"instruction": "' + LATIN1 + b' au lait?", "source": "mine"}\n')
    return ["instructions"], f"data/instructions/pool.jsonl:{lines + 1}: not UTF-8 text (byte {offset + 3} is 0xe9)"


def _broken_json_instruction(project: Path) -> tuple[list[str], str]:
    pool = project / "data/instructions/pool.jsonl"
    lines = pool.read_bytes().count(b"\n")
    _append_line(pool, b'{"instruction": "never closed\n')
    return ["instructions"], f"data/instructions/pool.jsonl:{lines + 1}: broken JSON line"


def _truncated_parquet(project: Path) -> tuple[list[str], str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    whole = project / "whole.parquet"
    pq.write_table(pa.table({"system": ["s"] * 500, "prompt": ["p"] * 500, "output": ["o"] * 500}), whole)
    cut = project / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return ["validate-data", "--kind", "sft", "cut.parquet"], "cut.parquet: not a readable parquet file"


def _not_parquet(project: Path) -> tuple[list[str], str]:
    (project / "notes.parquet").write_text("these are notes, not a table\n")
    return ["validate-data", "--kind", "sft", "notes.parquet"], "notes.parquet: not a readable parquet file"


def _non_utf8_params(project: Path) -> tuple[list[str], str]:
    params = project / "params.yaml"
    offset = params.stat().st_size + len(b"# ")
    _append_line(params, b"# " + LATIN1 + b"\n")
    return ["check"], f"params.yaml: not UTF-8 text (byte {offset + 3} is 0xe9)"


def _non_utf8_taxonomy(project: Path) -> tuple[list[str], str]:
    _append_line(project / "data/taxonomy/preferences.yaml", b"# " + LATIN1 + b"\n")
    return ["check"], "data/taxonomy/preferences.yaml: not UTF-8 text"


def _non_utf8_rubric_examples(project: Path) -> tuple[list[str], str]:
    rubrics = project / "data/bench/rubric_examples.json"
    rubrics.write_bytes(rubrics.read_bytes().replace(b"score", b"sc" + LATIN1, 1))
    return ["check"], "data/bench/rubric_examples.json: not UTF-8 text"


def _non_utf8_bench_file(project: Path) -> tuple[list[str], str]:
    bench = project / "bench.jsonl"
    bench.write_bytes(b'{"id": "1", "prompt": "' + LATIN1 + b'"}\n')
    return ["validate-data", "--kind", "bench", "bench.jsonl"], "bench.jsonl:1: not UTF-8 text (byte 26 is 0xe9)"


BAD_INPUTS: dict[str, Callable[[Path], tuple[list[str], str]]] = {
    "instruction file with non-UTF-8 bytes": _non_utf8_instruction,
    "instruction file with a broken JSON line": _broken_json_instruction,
    "truncated parquet to validate-data": _truncated_parquet,
    "non-parquet file to validate-data": _not_parquet,
    "params.yaml with non-UTF-8 bytes": _non_utf8_params,
    "taxonomy with non-UTF-8 bytes": _non_utf8_taxonomy,
    "rubric examples with non-UTF-8 bytes": _non_utf8_rubric_examples,
    "bench file with non-UTF-8 bytes to validate-data": _non_utf8_bench_file,
}


@pytest.fixture(scope="module")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("bad-inputs") / "template", profile="ci")


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_one_line_naming_the_file_and_where(case: str, default_project: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(default_project, project)
    command, expected = BAD_INPUTS[case](project)
    done = run_janus(project, *command, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(errors) == 1 and expected in errors[0], done.stderr[-3000:]
    assert not (project / "artifacts").exists()  # nothing half-written to clean up
