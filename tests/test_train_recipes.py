"""Each recipe trains 1-2 steps on the ci profile (tiny random Llama) through `janus <stage>`,
saves a checkpoint the evaluation stage can load, and logs its curves, inputs and model into
the stage's MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import clone_project, run_janus

SYSTEMS = [
    "You are a patient tutor who explains with one concrete example.",
    "You answer like a terse engineer: short sentences, no filler.",
    "You are a poet; answer in two rhyming lines.",
    "",  # the paper's data has rows without a system message too
]
PROMPTS = ["What is DVC?", "Why is the sky blue?", "Name a prime number.", "How do plants drink?"]


def _preference_set() -> list[dict[str, str]]:
    return [
        {"dimension": d, "subdimension": "s", "preference": "p", "description": "d"}
        for d in ("style", "background_knowledge", "informativeness", "harmlessness")
    ]


def write_collection(project: Path, rows: int = 8) -> Path:
    """Tiny splits in exactly the official schemas (PAPER.md, "Released splits and schemas")."""
    root = project / "artifacts" / "collection"
    sft = [
        {
            "main_source": "alpaca",
            "original_source": "alpaca-gpt4",
            "preference_set": _preference_set(),
            "system": SYSTEMS[i % len(SYSTEMS)],
            "prompt": PROMPTS[i % len(PROMPTS)] + f" ({i})",
            "output": f"Answer number {i}: it depends, and here is why.",
        }
        for i in range(rows)
    ]
    pairs = [
        {
            "main_source": r["main_source"],
            "original_source": r["original_source"],
            "system": r["system"],
            "prompt": r["prompt"],
            "chosen": [{"content": r["prompt"], "role": "user"}, {"content": r["output"], "role": "assistant"}],
            "rejected": [{"content": r["prompt"], "role": "user"}, {"content": "No idea.", "role": "assistant"}],
        }
        for r in sft
    ]
    rm = [
        {"input": f"{r['system']}\n{r['prompt']}".strip(), "chosen": r["output"], "rejected": "No idea."} for r in sft
    ]
    for name, data in (("sft", sft), ("sft_small", sft[: rows // 2 + 1]), ("dpo", pairs), ("orpo", pairs)):
        (root / name).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(data).to_parquet(root / name / "train.parquet", index=False)
    (root / "rm").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rm[:-2]).to_parquet(root / "rm" / "train.parquet", index=False)
    pd.DataFrame(rm[-2:]).to_parquet(root / "rm" / "test.parquet", index=False)
    return root


TUNED = {"params": {"learning_rate": 3e-4, "epochs": 1.0, "warmup_steps": 1, "lora_r": 8}, "eval_loss": 1.0}
STAGES = {
    "sft": "train_sft",
    "sft_small": "train_sft_small",
    "dpo": "train_dpo",
    "orpo": "train_orpo",
    "rm": "train_rm",
}


@pytest.fixture(scope="module")
def trained(ci_base_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ci project with the collection, tuned SFT parameters, and all five recipes trained."""
    project = clone_project(ci_base_project, tmp_path_factory.mktemp("train") / "project")
    write_collection(project)
    (project / "artifacts" / "tune").mkdir(parents=True)
    (project / "artifacts" / "tune" / "best_params.json").write_text(json.dumps(TUNED))
    for stage in STAGES.values():
        run_janus(project, stage, JANUS_PIPELINE_ID="test-train")
    return project


def _record(project: Path, name: str) -> dict:
    """The checkpoint's janus_train.json, read (and validated) the way the registry reads it."""
    from janus_align.models.train_record import read_train_record

    return read_train_record(project / "artifacts" / "models" / name).model_dump(exclude_none=True)


@pytest.mark.slow
def test_each_chat_recipe_saves_a_merged_checkpoint_the_evaluation_loads(trained: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from janus_align.models.checkpoint import load_tokenizer

    for name in ("sft", "sft_small", "dpo", "orpo"):
        out = trained / "artifacts" / "models" / name
        assert (out / "adapter" / "adapter_config.json").is_file()  # LoRA on in ci: the adapter is kept
        model = AutoModelForCausalLM.from_pretrained(out)  # plain: no peft needed to load it
        assert not any("lora" in key for key in model.state_dict())
        tokenizer = load_tokenizer(out)
        encoded = tokenizer(["Hi"], return_tensors="pt")
        with torch.no_grad():
            generated = model.generate(**encoded, max_new_tokens=2, do_sample=False)
        assert generated.shape[1] == encoded["input_ids"].shape[1] + 2
        assert tokenizer.chat_template and "{% generation %}" not in tokenizer.chat_template  # its own template
        record = _record(trained, name)
        assert record["metrics"]["steps"] == 2 and record["metrics"]["eval_loss"] > 0


@pytest.mark.slow
def test_reward_model_scores_chosen_and_starts_from_a_one_epoch_sft(trained: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = trained / "artifacts" / "models" / "rm"
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    with torch.no_grad():
        score = model(**tokenizer(["What is DVC? It versions data."], return_tensors="pt")).logits
    assert score.shape == (1, 1)
    record = _record(trained, "rm")
    assert record["init_metrics"]["steps"] == 2
    assert record["eval_rows"] == 2  # the RM split's own test file is the held-out set
    assert not (trained / "artifacts" / "models" / "rm.init").exists()  # the init is not kept


@pytest.mark.slow
def test_sft_reads_the_tuned_hyperparameters(trained: Path) -> None:
    for name in ("sft", "sft_small"):
        recipe = _record(trained, name)["recipe"]
        assert recipe["learning_rate"] == 3e-4 and recipe["warmup_steps"] == 1
        assert recipe["lora"]["r"] == 8 and recipe["lora"]["alpha"] == 16  # the alpha/r ratio is kept
    assert _record(trained, "dpo")["recipe"]["learning_rate"] == 5e-5  # tune is for SFT only


@pytest.mark.slow
def test_stage_runs_carry_curves_inputs_tags_and_a_chat_model(trained: Path) -> None:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{trained / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    parents = set()
    for name, stage in STAGES.items():
        record = _record(trained, name)
        run = client.get_run(record["run_id"])
        assert run.data.tags["stage"] == stage and run.data.tags["profile"] == "ci"
        assert {"git_commit", "data_version", "base_model"} <= set(run.data.tags)
        parents.add(run.data.tags["mlflow.parentRunId"])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_loss")] == [1, 2]
        contexts = {i.dataset.name: {t.value for t in i.tags} for i in run.inputs.dataset_inputs}
        assert {"training"} in contexts.values() and {"evaluation"} in contexts.values()
        assert "train.common.lora.r" in run.data.params  # the CLI's flattened params
        if name == "rm":
            assert "model_uri" not in record
            assert [m.step for m in client.get_metric_history(run.info.run_id, "init_sft/loss")] == [1, 2]
            continue
        info = mlflow.models.get_model_info(record["model_uri"])
        assert info.signature.inputs.input_names() == ["messages"]
        assert {p.name for p in info.signature.params.params} >= {"max_new_tokens", "temperature"}
    assert len(parents) == 1  # one pipeline parent
    model = mlflow.pyfunc.load_model(_record(trained, "dpo")["model_uri"])
    messages = [{"role": "system", "content": SYSTEMS[0]}, {"role": "user", "content": PROMPTS[0]}]
    answers = model.predict(pd.DataFrame({"messages": [messages]}), params={"max_new_tokens": 3})
    assert len(answers) == 1 and isinstance(answers[0], str)
