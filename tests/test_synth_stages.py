"""The generating stages and `assemble` on the ci profile (tiny random teacher: random text, but
JSON-schema constrained decoding keeps structured answers valid), the released schemas, TRL's
trainers on every split, the reject path, and resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import BIN, clone_project, janus_env, run_janus
from janus_align.bench.bench import one_set_params
from janus_align.config import load_params
from janus_align.inputs import DIMENSIONS
from janus_align.llm.cache import RequestCache
from janus_align.llm.engine import LLMEngine
from janus_align.llm.types import ChatResult
from janus_align.synth import system_messages
from janus_align.synth.preferences import generate_preference_sets
from janus_align.synth.rows import InstructionRow
from janus_align.synth.splits import SCHEMAS

pytestmark = pytest.mark.slow
SPLITS = ("sft", "sft_small", "dpo", "orpo", "rm")
# One thread: the tiny model gains nothing from two, and two OpenMP threads slow down badly
# when other processes share the cores.
ENV = {"OMP_NUM_THREADS": "1"}


def janus(project: Path, *args: str, check: bool = True):
    return run_janus(project, *args, check=check, **ENV)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def keep_rows(path: Path, count: int) -> None:
    """Cut an upstream file to its first rows, so a test asks the teacher only what it needs."""
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:count]))


def edit_params(project: Path, changes: dict) -> None:
    """Apply {"synth.max_system_chars": 5, ...} to the project's params.yaml."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for dotted, value in changes.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def synth_project(ci_base_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = clone_project(ci_base_project, tmp_path_factory.mktemp("synth") / "project")
    edit_params(project, {"synth.num_instructions": 4})
    for stage in ("instructions", "preferences", "system_messages", "responses", "assemble"):
        janus(project, stage)
    return project


def test_every_generated_row_records_teacher_template_and_usage(synth_project: Path):
    params = load_params(synth_project / "params.yaml")
    instructions = jsonl(synth_project / "artifacts/synth/instructions.jsonl")
    sets = jsonl(synth_project / "artifacts/synth/preference_sets.jsonl")
    rejects = jsonl(synth_project / "artifacts/synth/stages/preferences/rejects.jsonl")
    assert len(sets) + len(rejects) == len(instructions) * params.synth.sets_per_instruction
    by_instruction = defaultdict(list)
    for row in sets:
        assert [e["dimension"] for e in row["preference_set"]] == list(DIMENSIONS)
        assert all(
            e["subdimension"] and e["preference"].strip() and e["description"].strip() for e in row["preference_set"]
        )
        assert row["id"] == f"{row['instruction_id']}-{row['set_index']}"
        assert row["teacher"].startswith("base@") and row["template_version"].startswith("synth-v2-")
        assert row["usage"]["prompt_tokens"] > 0 and row["usage"]["completion_tokens"] > 0
        by_instruction[row["instruction_id"]].append(tuple(e["subdimension"] for e in row["preference_set"]))
    assert all(len(set(tuples)) == len(tuples) for tuples in by_instruction.values())

    responses = jsonl(synth_project / "artifacts/synth/responses.jsonl")
    assert responses and len({r["id"] for r in responses}) == len(responses)
    for row in responses:
        assert row["system"].strip() and row["output"].strip()
        assert set(row["provenance"]) == {"preferences", "system_messages", "responses"}
        assert row["usage"] == row["provenance"]["responses"]["usage"]
        assert all(p["teacher"] == row["teacher"] for p in row["provenance"].values())


def test_splits_have_exactly_the_released_schemas_and_load_with_datasets(synth_project: Path):
    from datasets import load_dataset

    collection = synth_project / "artifacts/collection"
    responses = jsonl(synth_project / "artifacts/synth/responses.jsonl")
    summary = json.loads((synth_project / "metrics/synthesis.json").read_text())
    complete = len({r["instruction_id"] for r in responses}) - summary["rows"]["instructions_incomplete"]
    counts = {}
    for split in SPLITS:
        files = {"train": str(collection / split / "train.parquet")}
        if split == "rm":
            files["test"] = str(collection / split / "test.parquet")
        for path in files.values():
            assert pq.read_schema(path).remove_metadata() == SCHEMAS[split]
        loaded = load_dataset("parquet", data_files=files)
        assert list(loaded["train"].column_names) == SCHEMAS[split].names
        counts[split] = sum(len(part) for part in loaded.values())
        assert (collection / split / "README.md").is_file()
    # Only complete instructions: every set, each with its own system message.
    assert counts["sft_small"] == complete > 0 and counts["sft"] == 3 * complete
    assert counts["dpo"] == counts["orpo"] == counts["rm"] > 0

    sft = pq.read_table(collection / "sft/train.parquet").to_pylist()
    systems = defaultdict(set)
    for row in sft:
        systems[row["prompt"]].add(row["system"])
    assert len(systems) == complete and all(len(s) == 3 for s in systems.values())

    dpo = pq.read_table(collection / "dpo/train.parquet").to_pylist()
    small = {(r["prompt"], r["system"]) for r in pq.read_table(collection / "sft_small/train.parquet").to_pylist()}
    for row in dpo:
        assert [m["role"] for m in row["chosen"]] == ["system", "user", "assistant"]
        assert row["chosen"][0]["content"] == row["rejected"][0]["content"] == row["system"]
        assert row["chosen"][1]["content"] == row["prompt"]
        assert row["chosen"][2]["content"] != row["rejected"][2]["content"]
        assert (row["prompt"], row["system"]) in small  # the same chosen system message as sft_small


def test_cards_and_synthesis_metrics(synth_project: Path):
    summary = json.loads((synth_project / "metrics/synthesis.json").read_text())
    assert set(summary["stages"]) == {"preferences", "system_messages", "responses"}
    totals = summary["totals"]
    for key in ("requests", "rejected", "prompt_tokens", "completion_tokens", "cost_usd", "wall_s", "requests_per_s"):
        assert key in totals
    assert totals["prompt_tokens"] > 0 and totals["requests"] >= summary["rows"]["responses"]
    assert summary["splits"]["sft"] == 3 * summary["splits"]["sft_small"]
    card = (synth_project / "artifacts/collection/sft/README.md").read_text()
    assert card.startswith("---\nconfigs:") and summary["template_version"] in card
    assert "| style |" in card and "| harmlessness |" in card and f"| train | {summary['splits']['sft']} |" in card
    assert "test.parquet" in (synth_project / "artifacts/collection/rm/README.md").read_text()


def test_synthesis_mlflow_run_is_a_child_of_the_pipeline_run_with_the_splits_as_inputs(synth_project: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{synth_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["janus"], output_format="list")
    synthesis = [r for r in runs if r.info.run_name == "synthesis"]
    assemble = [r for r in runs if r.info.run_name == "assemble"]
    assert len(synthesis) == 1 and len(assemble) == 1
    assert synthesis[0].data.tags["mlflow.parentRunId"] == assemble[0].data.tags["mlflow.parentRunId"]
    assert synthesis[0].data.tags["stage"] == "synthesis"
    names = {d.dataset.name for d in synthesis[0].inputs.dataset_inputs}
    assert {"sft", "sft_small", "dpo", "orpo", "rm"} <= names
    assert (
        synthesis[0].data.metrics["rows_sft"]
        == json.loads((synth_project / "metrics/synthesis.json").read_text())["splits"]["sft"]
    )


def test_every_split_trains_one_step_with_its_trl_trainer(synth_project: Path, tmp_path: Path):
    """Load each split with `datasets` and hand it to TRL (docs/data.md explains the mappings):
    ORPO takes the file as it is; DPOTrainer needs the string `prompt` column dropped (TRL 1.16
    fails on a string prompt next to conversational chosen/rejected); SFT and RM rows are turned
    into TRL conversations, as train/datasets.py does."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    model_dir = synth_project / "artifacts/models/base"
    collection = synth_project / "artifacts/collection"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    common = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=1,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
    )

    def load(split: str, parts: tuple[str, ...] = ("train",)):
        return load_dataset("parquet", data_files={p: str(collection / split / f"{p}.parquet") for p in parts})["train"]

    def trained(trainer) -> bool:
        return trainer.train().global_step == 1

    sft = load("sft")
    messages = sft.map(
        lambda r: {
            "messages": [
                {"role": "system", "content": r["system"]},
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["output"]},
            ]
        },
        remove_columns=sft.column_names,
    )
    assert trained(
        SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=SFTConfig(max_length=128, **common),
            train_dataset=messages,
            processing_class=tokenizer,
        )
    )

    orpo = ORPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=ORPOConfig(max_length=128, max_completion_length=64, **common),
        train_dataset=load("orpo"),
        processing_class=tokenizer,
    )
    first = orpo.train_dataset[0]
    assert "<|im_start|>system\n" + load("orpo")[0]["system"][:20] in tokenizer.decode(first["prompt_input_ids"])
    assert trained(orpo)

    dpo = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=DPOConfig(max_length=128, **common),
        train_dataset=load("dpo").remove_columns("prompt"),
        processing_class=tokenizer,
    )
    assert load("dpo")[0]["system"][:20] in tokenizer.decode(dpo.train_dataset[0]["prompt_ids"])
    assert trained(dpo)

    rm = load("rm", ("train", "test")).map(
        lambda r: {
            "prompt": [{"role": "user", "content": r["input"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        },
        remove_columns=["input"],
    )
    reward_model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    reward_model.config.pad_token_id = tokenizer.pad_token_id
    assert trained(
        RewardTrainer(
            model=reward_model,
            args=RewardConfig(max_length=128, **common),
            train_dataset=rm,
            processing_class=tokenizer,
        )
    )


def test_malformed_answers_are_rejected_and_fail_the_stage_above_max_reject_rate(synth_project: Path, tmp_path: Path):
    project = clone_project(synth_project, tmp_path / "project")
    # 8 tokens cannot hold the JSON: every answer is malformed, re-asked, then rejected.
    edit_params(project, {"synth.preference_sampling.max_new_tokens": 8, "teacher.max_reasks": 1})
    keep_rows(project / "artifacts/synth/instructions.jsonl", 2)
    done = janus(project, "preferences", check=False)
    assert done.returncode == 2
    assert "above synth.max_reject_rate" in done.stderr and "Traceback" not in done.stderr
    rejects = jsonl(project / "artifacts/synth/stages/preferences/rejects.jsonl")
    units = len(jsonl(project / "artifacts/synth/instructions.jsonl")) * 3
    assert len(rejects) == units
    assert all(r["stage"] == "preferences" and "not valid JSON" in r["reason"] and r["raw"] for r in rejects)
    stats = json.loads((project / "artifacts/synth/stages/preferences/stats.json").read_text())
    assert stats["rejected"] == units and stats["reject_rate"] == 1.0
    assert stats["engine"]["requests"] == 2 * units  # each asked once, then re-asked once


def test_overlong_system_messages_are_reasked_then_rejected(synth_project: Path, tmp_path: Path, monkeypatch):
    project = clone_project(synth_project, tmp_path / "project")
    edit_params(project, {"synth.max_system_chars": 5})
    keep_rows(project / "artifacts/synth/preference_sets.jsonl", 2)
    done = janus(project, "system_messages", check=False)
    assert done.returncode == 2 and "system_messages:" in done.stderr
    rejects = jsonl(project / "artifacts/synth/stages/system_messages/rejects.jsonl")
    assert rejects and all(r["reason"].startswith("overlong") and len(r["raw"]) > 5 for r in rejects)
    stats = json.loads((project / "artifacts/synth/stages/system_messages/stats.json").read_text())
    assert stats["reasked"] == stats["units"]  # asked again with new seeds before giving up
    # Below the threshold the same rejects are only counted; rejected answers are not served from
    # the cache, so the re-run asked the teacher afresh (the same local model: the same answers).
    edit_params(project, {"synth.max_reject_rate": 1.0})
    monkeypatch.chdir(project)
    system_messages.run(load_params(project / "params.yaml"))
    stats = json.loads((project / "artifacts/synth/stages/system_messages/stats.json").read_text())
    assert stats["rejected"] == len(rejects) and stats["engine"]["cached"] == 0


def test_generated_mode_proposes_distinct_sets_per_instruction(synth_project: Path, tmp_path: Path):
    project = clone_project(synth_project, tmp_path / "project")
    edit_params(
        project,
        {
            "synth.preference_mode": "generated",
            "synth.sets_per_instruction": 2,
            "synth.max_preference_chars": 8,
            "synth.max_description_chars": 16,
            "synth.preference_sampling.max_new_tokens": 1024,
        },
    )
    keep_rows(project / "artifacts/synth/instructions.jsonl", 1)
    janus(project, "preferences")
    rows = jsonl(project / "artifacts/synth/preference_sets.jsonl")
    assert len(rows) == 2
    stats = json.loads((project / "artifacts/synth/stages/preferences/stats.json").read_text())
    assert stats["units"] == 1  # one request per instruction
    assert sorted(r["set_index"] for r in rows) == [0, 1]
    assert len({tuple(e["subdimension"] for e in r["preference_set"]) for r in rows}) == 2
    assert all([e["dimension"] for e in r["preference_set"]] == list(DIMENSIONS) for r in rows)
    assert sum(r["usage"]["completion_tokens"] for r in rows) == stats["completion_tokens"]


class ScriptedBackend:
    """A teacher that proposes duplicate sets on the first seed and distinct ones on the next:
    a fault the random tiny model cannot be made to produce on purpose."""

    model_id = "scripted"

    def __init__(self, sets: int = 3) -> None:
        self.seeds: list[int] = []
        self.sets = sets

    def generate(self, requests, on_result) -> None:
        for i, request in enumerate(requests):
            first = not self.seeds
            self.seeds.append(request.seed)
            sets = [
                {
                    d: {"subdimension": "same" if first else f"{d}-{k}", "preference": "p", "description": "d"}
                    for d in DIMENSIONS
                }
                for k in range(self.sets)
            ]
            on_result(i, ChatResult(json.dumps({"preference_sets": sets}), 10, 20))

    def close(self) -> None:
        pass


def test_generated_duplicates_are_asked_again_with_a_new_seed(synth_project: Path):
    params = load_params(synth_project / "params.yaml")
    params = params.model_copy(update={"synth": params.synth.model_copy(update={"preference_mode": "generated"})})
    backend = ScriptedBackend()
    engine = LLMEngine(backend, RequestCache(":memory:"))
    instruction = InstructionRow(id="ins-1", prompt="Explain tides.", main_source="m", original_source="o")
    taxonomy = {d: {f"{d}-x": ["example"]} for d in DIMENSIONS}
    rows, rejects, outcomes = generate_preference_sets(engine, [instruction], params, taxonomy)
    assert len(backend.seeds) == 2 and backend.seeds[0] != backend.seeds[1]
    assert not rejects and len(rows) == 3 and outcomes[0].attempts == 2
    assert len({tuple(e.subdimension for e in r.preference_set) for r in rows}) == 3
    assert sum(r.usage.completion_tokens for r in rows) == 40  # both attempts, split across the 3 sets


def test_generated_mode_with_one_set_per_prompt_gives_that_set(synth_project: Path):
    """The bench asks generated mode for one set per prompt: the row holds that set's entries
    (found by the paper rehearsal, where the answer's list of sets was taken for the set)."""
    params = load_params(synth_project / "params.yaml")
    params = one_set_params(
        params.model_copy(update={"synth": params.synth.model_copy(update={"preference_mode": "generated"})})
    )
    engine = LLMEngine(ScriptedBackend(sets=1), RequestCache(":memory:"))
    instruction = InstructionRow(id="ins-1", prompt="Explain tides.", main_source="m", original_source="o")
    taxonomy = {d: {f"{d}-x": ["example"]} for d in DIMENSIONS}
    rows, rejects, _ = generate_preference_sets(engine, [instruction], params, taxonomy)
    assert not rejects and [r.id for r in rows] == ["ins-1-0"]
    assert [e.dimension for e in rows[0].preference_set] == list(DIMENSIONS)


def cache_rows(project: Path) -> dict[str, float]:
    """Request key -> commit time of every completed request in the project's LLM cache."""
    path = project / ".cache" / "llm.sqlite"
    if not path.is_file():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            return dict(db.execute("SELECT key, created_at FROM completions"))
    except sqlite3.OperationalError:  # the table is not created yet
        return {}


def test_resume_after_kill_repeats_no_paid_request(synth_project: Path, tmp_path: Path):
    """SIGKILL `janus responses` once some answers are in the request cache, run it again: it
    completes with no lost or duplicated rows and pays for no completed request twice."""
    project = clone_project(synth_project, tmp_path / "project")  # without the request cache
    # Small batches: answers reach the cache two at a time, so there is a moment to kill.
    edit_params(project, {"teacher.batch_size": 2})
    units = len(jsonl(project / "artifacts/synth/system_messages.jsonl"))
    for stale in ("responses.jsonl", "rejects/responses.jsonl", "stats/responses.json"):
        (project / "artifacts/synth" / stale).unlink()
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "janus"), "responses"], cwd=project, env=janus_env(**ENV), stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 600
    try:
        while process.poll() is None and len(cache_rows(project)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the stage finished before it could be killed"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        log.close()
    before = cache_rows(project)
    assert 3 <= len(before) < units
    assert not (project / "artifacts/synth/responses.jsonl").exists()  # no half-written output

    janus(project, "responses")
    after = cache_rows(project)
    stats = json.loads((project / "artifacts/synth/stages/responses/stats.json").read_text())
    fresh = stats["engine"]["requests"] - stats["engine"]["cached"]
    # Completed answers are untouched and were served from the cache, and every request the
    # re-run paid for is a new cache row: none of them repeated a completed one.
    assert all(after.get(key) == committed for key, committed in before.items())
    assert stats["engine"]["cached"] >= len(before)
    assert len(after) == len(before) + fresh

    rows = jsonl(project / "artifacts/synth/responses.jsonl")
    rejects = jsonl(project / "artifacts/synth/stages/responses/rejects.jsonl")
    produced = sorted([row["id"] for row in rows] + [row["id"] for row in rejects])
    assert produced == sorted(row["id"] for row in jsonl(project / "artifacts/synth/system_messages.jsonl"))
