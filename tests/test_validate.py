"""The validate stage and `janus validate-data`: every Great Expectations failure mode of issue 3.

Fixture rows follow the official schemas of PAPER.md exactly; each test injects one bad row and
checks that validation stops naming the right expectation and column. Most tests call the Python
entry points directly (GX imports take seconds); a few run `janus` as a user would.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import REPO, make_project, run_janus
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.records import write_jsonl
from janus_align.validate import validate

DIMENSIONS = ["style", "background_knowledge", "informativeness", "harmlessness"]
BUNDLED_BENCH_PROMPTS = REPO / "src" / "janus_align" / "default_data" / "bench" / "prompts.jsonl"
A_BENCH_PROMPT = json.loads(BUNDLED_BENCH_PROMPTS.read_text().splitlines()[0])["prompt"]
SPLIT_FILES = {"sft": "train.jsonl", "sft_small": "train.parquet", "dpo": "train.jsonl", "orpo": "train.parquet"}


def preference_set(tag: str) -> list[dict[str, str]]:
    return [
        {
            "dimension": d,
            "subdimension": f"{d} aspect {tag}",
            "preference": f"prefers {d} {tag}",
            "description": f"The user wants the {d} of the answer to suit case {tag}.",
        }
        for d in DIMENSIONS
    ]


def collection(instructions: int = 4) -> dict[str, list[dict[str, Any]]]:
    """Valid, mutually consistent rows of the five splits (rm as train + test)."""
    sft, small, dpo, orpo, rm = [], [], [], [], []
    for i in range(instructions):
        prompt = f"Explain topic number {i} of the curriculum in plain words."
        rows = [
            {
                "main_source": "pool",
                "original_source": "team-science",
                "preference_set": preference_set(f"{i}-{k}"),
                "system": f"You are speaking with reader {k} who needs topic {i} in style {k}.",
                "prompt": prompt,
                "output": f"Answer {k} about topic {i}: it works like this.",
            }
            for k in range(3)
        ]
        sft += rows
        small.append(rows[0])
        pair = {key: rows[0][key] for key in ("main_source", "original_source", "system", "prompt")}
        pair["chosen"] = [{"content": prompt, "role": "user"}, {"content": rows[0]["output"], "role": "assistant"}]
        pair["rejected"] = [{"content": prompt, "role": "user"}, {"content": rows[1]["output"], "role": "assistant"}]
        dpo.append(pair)
        orpo.append(json.loads(json.dumps(pair)))
        rm.append(
            {"input": f"{rows[0]['system']}\n\n{prompt}", "chosen": rows[0]["output"], "rejected": rows[1]["output"]}
        )
    return {"sft": sft, "sft_small": small, "dpo": dpo, "orpo": orpo, "rm_train": rm[:-1], "rm_test": rm[-1:]}


def bench_rows(key: str = "rubrics") -> list[dict[str, Any]]:
    rubric = {
        "criteria": "Does the answer suit the user?",
        "score_descriptions": {str(s): f"level {s}" for s in range(1, 6)},
    }
    return [
        {
            "source": "AlpacaEval",
            "preference_set": preference_set(str(i)),
            "system": f"You help reader {i}.",
            "prompt": A_BENCH_PROMPT if i == 0 else f"Bench question {i}?",
            "reference_answer": f"Reference answer {i}.",
            key: [rubric] * 4,
        }
        for i in range(3)
    ]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path, index=False)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        write_jsonl(path, rows)
    return path


def write_collection(project: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    root = project / "artifacts" / "collection"
    for split, name in SPLIT_FILES.items():
        write_rows(root / split / name, splits[split])
        (root / split / "README.md").write_text(f"# {split}\n")
    write_rows(root / "rm" / "train.parquet", splits["rm_train"])
    write_rows(root / "rm" / "test.parquet", splits["rm_test"])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with the bench prompts, as the stage sees it (cwd = project root)."""
    (tmp_path / "data" / "bench").mkdir(parents=True)
    shutil.copy(BUNDLED_BENCH_PROMPTS, tmp_path / "data" / "bench" / "prompts.jsonl")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def validate_data(path: Path, kind: str) -> str:
    """`janus validate-data` in-process; return the JanusError message (fails if none is raised)."""
    with pytest.raises(JanusError) as failure:
        validate.main(argparse.Namespace(kind=kind, file=str(path), params="params.yaml"))
    return str(failure.value)


# --- the stage ---------------------------------------------------------------------------------


def test_valid_collection_passes_publishes_data_docs_and_logs_to_mlflow(project: Path) -> None:
    import mlflow

    write_collection(project, collection(instructions=24))  # 72 SFT rows: the default profile's size
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    mlflow.set_experiment("validate-test")  # not an experiment id cached from another store
    with mlflow.start_run() as active:
        started = time.perf_counter()
        summary = validate.run(Params())
        wall = time.perf_counter() - started
    print(f"validate stage on 72/24/24/24/24-row splits: {wall:.1f} s")

    assert summary["success"] is True
    assert set(summary["splits"]) == {"sft", "sft_small", "dpo", "orpo", "rm"}
    assert summary["splits"]["sft"]["rows"] == 72 and summary["splits"]["rm"]["rows"] == 24
    for counts in summary["splits"].values():
        assert counts["failed"] == 0 and counts["evaluated"] == counts["successful"] > 10
    assert json.loads((project / "metrics" / "validation.json").read_text()) == summary
    index = project / "reports" / "data_docs" / "index.html"
    assert index.is_file() and "janus_sft_small" in index.read_text()
    # the suites are saved in the file context; the row counts stay parameters, not values
    assert "$PARAMETER" in (project / "gx" / "expectations" / "janus_sft.json").read_text()

    run = mlflow.get_run(active.info.run_id)
    assert run.data.metrics["validation.success"] == 1.0
    assert run.data.metrics["validation.sft.evaluated"] == summary["splits"]["sft"]["evaluated"]
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(active.info.run_id, "data_docs")]
    assert "data_docs/index.html" in artifacts


def test_inconsistent_row_counts_stop_the_stage_after_writing_the_summary(project: Path) -> None:
    splits = collection()
    splits["rm_train"].pop()  # rm train + test no longer equals dpo
    extra = collection(instructions=5)["sft"][-3:]  # a 5th instruction only in sft: 15 != 3 x 4
    splits["sft"] += extra
    splits["orpo"].pop()  # fewer pairs than instructions: a warning, not a stop
    write_collection(project, splits)

    with pytest.raises(JanusError) as failure:
        validate.run(Params())
    message = str(failure.value)
    assert "[sft] expect_table_row_count_to_equal" in message and "observed 15" in message
    assert "[rm] expect_table_row_count_to_equal" in message and "observed 3" in message
    assert "reports/data_docs/index.html" in message
    summary = json.loads((project / "metrics" / "validation.json").read_text())
    assert summary["success"] is False
    assert summary["splits"]["rm"]["success"] is False and summary["splits"]["dpo"]["success"] is True
    orpo = summary["splits"]["orpo"]
    assert (orpo["rows"], orpo["failed"], orpo["critical_failed"], orpo["success"]) == (3, 1, 0, True)
    assert "[orpo]" not in message
    assert (project / "reports" / "data_docs" / "index.html").is_file()


def test_missing_split_folder_names_it(project: Path) -> None:
    splits = collection()
    write_collection(project, splits)
    shutil.rmtree(project / "artifacts" / "collection" / "orpo")
    with pytest.raises(JanusError, match=r"artifacts/collection/orpo: split folder not found"):
        validate.run(Params())


# --- one failure mode per test, through validate-data's entry point ----------------------------


def test_null_value_is_reported_with_its_column_and_row(project: Path) -> None:
    rows = collection()["sft_small"]
    rows[2]["output"] = None
    message = validate_data(write_rows(project / "small.parquet", rows), "sft_small")
    assert "expect_column_values_to_not_be_null on column 'output'" in message
    assert "small.parquet:3" in message


def test_empty_string_is_reported(project: Path) -> None:
    rows = collection()["dpo"]
    rows[1]["system"] = "   "
    message = validate_data(write_rows(project / "dpo.jsonl", rows), "dpo")
    assert "expect_column_values_to_not_match_regex on column 'system' (no empty strings)" in message
    assert "dpo.jsonl:2: system='   '" in message


def test_empty_text_inside_a_preference_set_is_reported(project: Path) -> None:
    rows = collection()["sft_small"]
    rows[0]["preference_set"][1]["description"] = ""
    message = validate_data(write_rows(project / "small.jsonl", rows), "sft_small")
    assert "column 'preference_shortest_text'" in message and "small.jsonl:1" in message


def test_over_long_response_is_reported(project: Path) -> None:
    rows = collection()["sft"]
    rows[4]["output"] = "x" * (Params().synth.max_response_chars + 1)
    message = validate_data(write_rows(project / "sft.jsonl", rows), "sft")
    assert "expect_column_value_lengths_to_be_between on column 'output'" in message
    assert f"'max_value': {Params().synth.max_response_chars}" in message and "sft.jsonl:5" in message


def test_over_long_chosen_response_is_reported(project: Path) -> None:
    rows = collection()["orpo"]
    rows[0]["chosen"][-1]["content"] = "y" * (Params().synth.max_response_chars + 1)
    message = validate_data(write_rows(project / "orpo.parquet", rows), "orpo")
    assert "expect_column_value_lengths_to_be_between on column 'chosen_response'" in message


def test_preference_set_with_a_repeated_dimension_is_reported(project: Path) -> None:
    rows = collection()["sft_small"]
    rows[3]["preference_set"][0]["dimension"] = "harmlessness"  # style missing, harmlessness twice
    message = validate_data(write_rows(project / "small.jsonl", rows), "sft_small")
    assert "expect_column_values_to_be_in_set on column 'preference_dimensions'" in message
    assert "4 dimensions exactly once" in message
    assert (
        "small.jsonl:4: preference_dimensions='background_knowledge,harmlessness,harmlessness,informativeness'"
        in message
    )


def test_preference_set_with_three_entries_is_reported(project: Path) -> None:
    rows = collection()["sft_small"]
    rows[0]["preference_set"].pop()
    message = validate_data(write_rows(project / "small.jsonl", rows), "sft_small")
    assert "'preference_dimensions'" in message and "small.jsonl:1" in message


def test_instruction_with_only_two_distinct_system_messages_is_reported(project: Path) -> None:
    rows = collection()["sft"]
    rows[5]["system"] = rows[4]["system"]  # instruction 1: systems k=0, 1, 1
    rows[5]["output"] = "A different answer, so only the system message repeats."
    message = validate_data(write_rows(project / "sft.jsonl", rows), "sft")
    assert "column 'systems_per_prompt' (3 distinct system messages per instruction)" in message
    assert "3 of 12 rows unexpected" in message and "sft.jsonl:4: systems_per_prompt=2" in message


def test_duplicate_prompt_and_system_is_reported(project: Path) -> None:
    rows = collection()["orpo"]
    rows.append(json.loads(json.dumps(rows[0])))
    message = validate_data(write_rows(project / "orpo.jsonl", rows), "orpo")
    assert "expect_compound_columns_to_be_unique on column 'prompt,system' ((prompt, system) unique)" in message
    assert "orpo.jsonl:5" in message


def test_chosen_equal_to_rejected_is_reported_for_dpo_and_rm(project: Path) -> None:
    dpo = collection()["dpo"]
    dpo[0]["rejected"][-1]["content"] = dpo[0]["chosen"][-1]["content"] + "  "  # differs only in spacing
    message = validate_data(write_rows(project / "dpo.parquet", dpo), "dpo")
    assert "column 'pair_differs' (chosen != rejected)" in message and "dpo.parquet:1: pair_differs=False" in message

    rm = collection()["rm_train"]
    rm[2]["rejected"] = rm[2]["chosen"]
    message = validate_data(write_rows(project / "rm.jsonl", rm), "rm")
    assert "column 'pair_differs' (chosen != rejected)" in message and "rm.jsonl:3" in message


def test_bench_prompt_leaked_into_a_split_is_reported(project: Path) -> None:
    small = collection()["sft_small"]
    small[1]["prompt"] = "  " + A_BENCH_PROMPT.upper().replace(" ", "\n ")  # case and spacing differ
    message = validate_data(write_rows(project / "small.jsonl", small), "sft_small")
    assert "column 'prompt_has_bench_prompt' (no bench prompt in any split)" in message and "small.jsonl:2" in message

    rm = collection()["rm_train"]
    rm[0]["input"] = f"You are a patient tutor.\n\n{A_BENCH_PROMPT}"
    message = validate_data(write_rows(project / "rm.jsonl", rm), "rm")
    assert "column 'input_has_bench_prompt' (no bench prompt in any split)" in message


def test_missing_official_column_is_reported(project: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "original_source"} for row in collection()["dpo"]]
    message = validate_data(write_rows(project / "dpo.jsonl", rows), "dpo")
    assert "expect_table_columns_to_match_set" in message and "original_source" in message


def test_a_file_of_another_kind_is_reported_in_the_files_own_columns(project: Path) -> None:
    path = write_rows(project / "sft.jsonl", collection()["sft"])
    message = validate_data(path, "rm")
    validators_own = ("input_has_bench_prompt", "pair_differs", "row_ref")
    assert not [name for name in validators_own if name in message], message
    sft_columns = sorted(collection()["sft"][0])
    assert f"the file's columns are {sft_columns}" in message
    assert "the schema needs ['input', 'chosen', 'rejected']; missing ['chosen', 'input', 'rejected']" in message
    assert "[rm] expect_column_values_to_not_be_null on column 'input' (no nulls): the file has no column 'input'" in (
        message
    )
    assert "BatchData" not in message
    # The column set comes first: it says why the rest failed.
    assert message.splitlines()[1].startswith("  [rm] expect_table_columns_to_match_set")


def test_checks_of_columns_the_file_lacks_are_skipped_not_passed(project: Path) -> None:
    import great_expectations as gx

    from janus_align.validate.frames import build_frame, read_rows

    frame = build_frame("dpo", read_rows([write_rows(project / "sft.jsonl", collection()["sft"])]), [])
    result = validate.validate_frame(gx.get_context(mode="ephemeral"), "dpo", "dpo", frame, Params().synth)
    report = validate.format_report(project / "sft.jsonl", result)
    assert (
        "skip  expect_column_values_to_be_in_set(pair_differs): chosen != rejected (not checked: the file has no"
        in (report)
    )
    assert "chosen_response=null" not in report  # no sample rows of a column the validator derived
    assert "on column 'chosen_response' (no nulls): the file has no column 'chosen'" in report


@pytest.mark.parametrize("kind", ["sft", "sft_small", "dpo", "orpo", "rm", "bench"])
def test_every_derived_column_is_declared_with_its_source_columns(kind: str) -> None:
    from janus_align.validate.frames import build_frame, file_columns

    rows = bench_rows() if kind == "bench" else collection()[{"rm": "rm_train"}.get(kind, kind)]
    frame = build_frame(kind, rows, [])
    assert sorted(file_columns(frame)) == sorted(rows[0])


# --- janus validate-data as a user runs it ------------------------------------------------------


@pytest.mark.slow  # two `janus` processes, each importing GX (~3 s) on a shared 2-core box
def test_validate_data_cli_accepts_old_rubric_key_and_fails_a_bad_parquet(tmp_path: Path) -> None:
    bench = write_rows(tmp_path / "bench.jsonl", bench_rows(key="rubric"))
    passed = run_janus(tmp_path, "validate-data", "--kind", "bench", str(bench))
    assert "bench.jsonl as bench: 3 rows" in passed.stdout
    assert "FAIL" not in passed.stdout and "ok    expect_column_values_to_be_in_set(rubric_score_keys)" in passed.stdout

    dpo = collection()["dpo"]
    dpo[2]["chosen"] = None
    bad = write_rows(tmp_path / "dpo.parquet", dpo)
    failed = run_janus(tmp_path, "validate-data", "--kind", "dpo", str(bad), check=False)
    assert failed.returncode == 2
    assert "FAIL  [dpo] expect_column_values_to_not_be_null on column 'chosen'" in failed.stdout
    assert "critical expectation(s) of the dpo suite failed" in failed.stderr and "dpo.parquet:3" in failed.stderr


@pytest.mark.slow  # imports GX and MLflow and creates the sqlite store
def test_validate_stage_via_cli_stops_with_exit_2(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", profile=None)
    splits = collection()
    splits["dpo"][0]["rejected"] = splits["dpo"][0]["chosen"]
    write_collection(project, splits)
    done = run_janus(project, "validate", check=False)
    assert done.returncode == 2, done.stderr
    assert "[dpo] expect_column_values_to_be_in_set on column 'pair_differs'" in done.stderr
    assert json.loads((project / "metrics" / "validation.json").read_text())["splits"]["dpo"]["success"] is False


def test_bench_rubric_missing_a_score_level_is_reported(project: Path) -> None:
    rows = bench_rows()
    rows[1]["rubrics"] = [json.loads(json.dumps(r)) for r in rows[1]["rubrics"]]
    del rows[1]["rubrics"][2]["score_descriptions"]["5"]
    message = validate_data(write_rows(project / "bench.json", rows), "bench")
    assert "column 'rubric_score_keys' (4 rubrics per item, each scoring 1..5)" in message
    assert "bench.json:2: rubric_score_keys='1,2,3,4,5|1,2,3,4,5|1,2,3,4|1,2,3,4,5'" in message
