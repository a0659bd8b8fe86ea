"""The TRL-native files `assemble` writes beside the official splits (issue 19, item 1): each
feeds its TRL trainer with no conversion. Loaded with `datasets` from the split folder's card
(config `trl`), handed to the real trainer, one step on the ci profile's tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import clone_project, run_janus
from janus_align import paths
from janus_align.inputs import DIMENSIONS
from janus_align.synth.prompts import TEMPLATE_VERSION
from janus_align.synth.rows import PreferenceEntry, ResponseRow, Usage
from janus_align.synth.splits import SCHEMAS, TRL_SCHEMAS

SPLITS = ("sft", "sft_small", "dpo", "orpo", "rm")
INSTRUCTIONS = 12
SETS = 3
ENV = {"OMP_NUM_THREADS": "1"}


def gold_response(instruction: int, set_index: int) -> ResponseRow:
    entries = [
        PreferenceEntry(dimension=d, subdimension=f"{d} {set_index}", preference="brief", description="short answers")
        for d in DIMENSIONS
    ]
    return ResponseRow(
        id=f"i{instruction}-{set_index}",
        instruction_id=f"i{instruction}",
        set_index=set_index,
        prompt=f"How do I water plant number {instruction}?",
        main_source="janus-default-pool",
        original_source="team-everyday",
        preference_set=entries,
        teacher="base@test",
        template_version=TEMPLATE_VERSION,
        usage=Usage(prompt_tokens=10, completion_tokens=5),
        system=f"You are gardener {set_index}, who answers in style {set_index}.",
        output=f"Water plant {instruction} once a week, style {set_index}.",
    )


def stage_stats(stage: str, rows: int) -> dict:
    return {
        "stage": stage,
        "teacher": "base@test",
        "template_version": TEMPLATE_VERSION,
        "units": rows,
        "rows_out": rows,
        "rejected": 0,
        "reject_rate": 0.0,
        "truncated": 0,
        "reasked": 0,
        "prompt_tokens": 10 * rows,
        "completion_tokens": 5 * rows,
        "cost_usd": 0.0,
        "wall_s": 1.0,
        "engine": {"requests": rows, "cached": 0, "wall_s": 1.0},
    }


def write_synthesis_outputs(project: Path) -> None:
    """What the generating stages leave for `assemble`, without asking a teacher."""
    rows = [gold_response(i, s) for i in range(INSTRUCTIONS) for s in range(SETS)]
    synth = project / "artifacts/synth"
    synth.mkdir(parents=True, exist_ok=True)
    (synth / "responses.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows))
    for stage in paths.GENERATING_STAGES:
        (project / paths.stats(stage)).parent.mkdir(parents=True, exist_ok=True)
        (project / paths.stats(stage)).write_text(json.dumps(stage_stats(stage, len(rows))))
    counts = {"read": INSTRUCTIONS, "removed_total": 0, "kept": INSTRUCTIONS, "sampled": INSTRUCTIONS}
    (project / "metrics").mkdir(exist_ok=True)
    (project / "metrics/instructions.json").write_text(json.dumps(counts))


@pytest.fixture(scope="module")
def assembled(ci_base_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ci project after `janus assemble` on hand-written gold responses (with rm_test rows)."""
    project = clone_project(ci_base_project, tmp_path_factory.mktemp("trl") / "project")
    write_synthesis_outputs(project)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("rm_test_fraction: 0.1", "rm_test_fraction: 0.25"))
    run_janus(project, "assemble", **ENV)
    return project


def load_trl(project: Path, split: str, part: str = "train"):
    from datasets import load_dataset

    return load_dataset(str(project / "artifacts/collection" / split), "trl", split=part)


def test_trl_files_hold_the_official_rows_in_trl_formats(assembled: Path) -> None:
    from datasets import load_dataset

    collection = assembled / "artifacts/collection"
    for split in SPLITS:
        parts = ("train", "test") if split == "rm" else ("train",)
        for part in parts:
            official = pq.read_table(collection / split / f"{part}.parquet")
            native = pq.read_table(collection / split / "trl" / f"{part}.parquet")
            assert official.schema.remove_metadata() == SCHEMAS[split]
            assert native.schema.remove_metadata() == TRL_SCHEMAS[split]
            assert native.num_rows == official.num_rows > 0, (split, part)
            for row, trl in zip(official.to_pylist(), native.to_pylist()):
                assert [m["role"] for m in trl["prompt"]] == ["system", "user"]
                if split.startswith("sft"):
                    assert trl["prompt"][0]["content"] == row["system"] and trl["prompt"][1]["content"] == row["prompt"]
                    assert trl["completion"] == [{"content": row["output"], "role": "assistant"}]
                elif split == "rm":
                    assert "\n".join(m["content"] for m in trl["prompt"]) == row["input"]
                    assert trl["chosen"][0]["content"] == row["chosen"]
                    assert trl["rejected"][0]["content"] == row["rejected"]
                else:
                    assert trl["prompt"] == row["chosen"][:2] == row["rejected"][:2]
                    assert trl["chosen"] == row["chosen"][2:] and trl["rejected"] == row["rejected"][2:]
        # The card's default config is still the official file alone.
        assert load_dataset(str(collection / split), split="train").column_names == SCHEMAS[split].names
    assert len(load_trl(assembled, "rm", "test")) > 0
    # Training reads the official files only, never the TRL twins beside them.
    from janus_align.train.datasets import split_files

    train, test = split_files("rm", collection)
    assert [p.name for p in train] == ["train.parquet"] and [p.name for p in test] == ["test.parquet"]


def _common(tmp_path: Path) -> dict:
    return dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
    )


def _tokenizer(project: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(project / "artifacts/models/base")


def _causal_lm(project: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(project / "artifacts/models/base")


@pytest.mark.parametrize("split", ["sft", "sft_small"])
def test_sft_trainer_takes_the_trl_file_as_it_is(assembled: Path, tmp_path: Path, split: str) -> None:
    from trl import SFTConfig, SFTTrainer

    dataset = load_trl(assembled, split)
    tokenizer = _tokenizer(assembled)
    trainer = SFTTrainer(
        model=_causal_lm(assembled),
        args=SFTConfig(max_length=128, gradient_checkpointing=False, **_common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    first = trainer.train_dataset[0]
    assert dataset[0]["prompt"][0]["content"] in tokenizer.decode(first["input_ids"])  # the system message
    assert trainer.train().global_step == 1


def test_dpo_trainer_takes_the_trl_file_as_it_is(assembled: Path, tmp_path: Path) -> None:
    from trl import DPOConfig, DPOTrainer

    dataset = load_trl(assembled, "dpo")
    tokenizer = _tokenizer(assembled)
    trainer = DPOTrainer(
        model=_causal_lm(assembled),
        args=DPOConfig(max_length=128, **_common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert dataset[0]["prompt"][0]["content"] in tokenizer.decode(trainer.train_dataset[0]["prompt_ids"])
    assert trainer.train().global_step == 1


def test_orpo_trainer_takes_the_trl_file_as_it_is(assembled: Path, tmp_path: Path) -> None:
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    dataset = load_trl(assembled, "orpo")
    tokenizer = _tokenizer(assembled)
    trainer = ORPOTrainer(
        model=_causal_lm(assembled),
        args=ORPOConfig(max_length=128, max_completion_length=64, **_common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert dataset[0]["prompt"][0]["content"] in tokenizer.decode(trainer.train_dataset[0]["prompt_input_ids"])
    assert trainer.train().global_step == 1


def test_reward_trainer_takes_the_trl_file_as_it_is_with_the_system_message(assembled: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    dataset = load_trl(assembled, "rm")
    tokenizer = _tokenizer(assembled)
    model = AutoModelForSequenceClassification.from_pretrained(assembled / "artifacts/models/base", num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(
        model=model,
        args=RewardConfig(max_length=128, **_common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    chosen = tokenizer.decode(trainer.train_dataset[0]["chosen_ids"])
    assert dataset[0]["prompt"][0]["content"] in chosen and dataset[0]["prompt"][1]["content"] in chosen
    assert trainer.train().global_step == 1
