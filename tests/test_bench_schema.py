"""The bench file format: our bench round-trips through every official layout unchanged."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench_samples import official_rows, write_jsonl
from janus_align.bench.schema import OFFICIAL_KEYS, BenchFileError, load_bench, write_bench
from janus_align.errors import JanusError
from janus_align.evaluate.responses import load_responses


@pytest.fixture
def bench_path(tmp_path):
    path = tmp_path / "bench.jsonl"
    write_bench(path, load_bench(write_jsonl(tmp_path / "source.jsonl", official_rows(5))))
    return path


def test_written_rows_have_exactly_the_official_keys_plus_id(bench_path):
    for line in bench_path.read_text().splitlines():
        row = json.loads(line)
        assert list(row) == ["id", *OFFICIAL_KEYS]
        assert len(row["rubrics"]) == len(row["preference_set"]) == 4
        assert sorted(row["rubrics"][0]["score_descriptions"]) == ["1", "2", "3", "4", "5"]
        assert sorted(row["preference_set"][0]) == ["description", "dimension", "preference", "subdimension"]


def test_round_trip_through_json_list_id_map_jsonl_and_parquet_gives_the_same_items(bench_path, tmp_path):
    original = load_bench(bench_path)
    rows = [item.official_row() for item in original]
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(rows))
    as_map = tmp_path / "map.json"  # the official evaluation layout: {id: row}
    as_map.write_text(json.dumps({row["id"]: {k: v for k, v in row.items() if k != "id"} for row in rows}))
    as_parquet = tmp_path / "bench.parquet"
    pq.write_table(pa.Table.from_pylist(rows), as_parquet)
    for path in (as_list, as_map, as_parquet):
        assert load_bench(path) == original, path.name
    again = tmp_path / "again.jsonl"
    write_bench(again, load_bench(as_parquet))
    assert again.read_text() == bench_path.read_text()


def test_the_older_rubric_key_and_rows_without_id_or_preference_set_load(tmp_path):
    rows = official_rows(3, with_ids=False)
    for row in rows:
        row["rubric"] = row.pop("rubrics")
    rows[2].pop("preference_set")
    items = load_bench(write_jsonl(tmp_path / "old.jsonl", rows))
    assert [item.id for item in items] == ["0", "1", "2"]  # position, as the released file has no id
    assert len(items[0].rubrics) == 4 and items[2].preference_set == []
    assert items[2].dimension_of(0) == "unknown" and items[0].dimension_of(3) == "harmlessness"
    as_parquet = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_pylist(official_rows(2, with_ids=False)), as_parquet)
    assert [item.id for item in load_bench(as_parquet)] == ["0", "1"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda row: row.pop("prompt"), "prompt"),
        (lambda row: row["rubrics"][1]["score_descriptions"].pop("3"), "rubrics.1.score_descriptions"),
        (lambda row: row.update(rubrics=[]), "rubrics"),
        (lambda row: row.update(system=5), "system"),
    ],
)
def test_a_broken_row_names_the_file_line_and_key(tmp_path, mutate, message):
    rows = official_rows(3)
    mutate(rows[1])
    path = write_jsonl(tmp_path / "broken.jsonl", rows)
    with pytest.raises(BenchFileError) as caught:
        load_bench(path)
    assert f"{path}:2" in str(caught.value) and message in str(caught.value)
    assert isinstance(caught.value, JanusError)


def test_duplicate_ids_are_refused(tmp_path):
    rows = official_rows(2)
    rows[1]["id"] = rows[0]["id"]
    with pytest.raises(BenchFileError, match=r"dup\.jsonl:2: duplicate id 'bench-0' \(first at .*dup\.jsonl:1\)"):
        load_bench(write_jsonl(tmp_path / "dup.jsonl", rows))


def test_an_error_names_the_real_line_when_the_file_has_blank_lines(tmp_path):
    rows = official_rows(2)
    rows[1].pop("prompt")
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n" + json.dumps(rows[0]) + "\n\n\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(BenchFileError, match=r"gaps\.jsonl:5: .*prompt"):
        load_bench(path)
    official = tmp_path / "official.json"
    official.write_text(json.dumps(rows))
    with pytest.raises(BenchFileError, match=r"official\.json: row 2: .*prompt"):
        load_bench(official)


def test_responses_load_from_our_jsonl_and_the_official_id_map(tmp_path):
    ours = write_jsonl(tmp_path / "base.jsonl", [{"id": "a", "model": "base", "response": "hi", "error": None}])
    official = tmp_path / "gpt_responses.json"
    official.write_text(json.dumps({"a": {"response": "hello"}, "b": {"response": None}}))
    assert load_responses(ours)["a"].response == "hi"
    loaded = load_responses(official)
    assert loaded["a"].response == "hello" and loaded["a"].error is None
    assert loaded["b"].error == "no response"  # the official scripts store None for a failed request
