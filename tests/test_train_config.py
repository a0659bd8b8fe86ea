"""Fast checks of the training recipe plumbing: split loading, settings merge, and the paper
profile's distributed wiring (a CPU dry run: the trainer config is built, nothing trains)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from janus_align.config.load import parse_params
from janus_align.config.profiles import profile_params
from janus_align.errors import JanusError
from janus_align.train import launch
from janus_align.train.datasets import load_split, preference_example, sft_example
from janus_align.train.settings import resolve
from janus_align.train.trl_arguments import training_args

REPO = Path(__file__).resolve().parents[1]


def profile(name: str):
    return parse_params(profile_params(name, base=REPO / "params.yaml", profiles_dir=REPO / "profiles"))


def _sft_rows(count: int) -> list[dict]:
    return [
        {
            "main_source": "m",
            "original_source": "o",
            "preference_set": [],
            "system": "Be kind.",
            "prompt": f"Q{i}",
            "output": f"A{i}",
        }
        for i in range(count)
    ]


def test_a_bad_split_row_names_file_row_and_column(tmp_path: Path) -> None:
    (tmp_path / "sft").mkdir()
    rows = _sft_rows(3)
    rows[1]["prompt"] = "  "
    pd.DataFrame(rows).to_parquet(tmp_path / "sft" / "train.parquet")
    with pytest.raises(JanusError, match=r"train\.parquet: row 2: column 'prompt' is empty"):
        load_split("sft", 0.1, 42, root=tmp_path)
    pd.DataFrame(_sft_rows(2)).drop(columns=["output"]).to_parquet(tmp_path / "sft" / "train.parquet")
    with pytest.raises(JanusError, match=r"row 1: column 'output' is missing"):
        load_split("sft", 0.1, 42, root=tmp_path)
    with pytest.raises(JanusError, match="split folder not found"):
        load_split("dpo", 0.1, 42, root=tmp_path)


def test_held_out_rows_are_seeded_disjoint_and_a_test_file_wins(tmp_path: Path) -> None:
    (tmp_path / "sft").mkdir()
    pd.DataFrame(_sft_rows(20)).to_parquet(tmp_path / "sft" / "train.parquet")
    first, again = load_split("sft", 0.1, 7, root=tmp_path), load_split("sft", 0.1, 7, root=tmp_path)
    assert len(first.eval) == 2 and len(first.train) == 18
    assert [r["prompt"] for r in first.eval] == [r["prompt"] for r in again.eval]
    assert not {r["prompt"] for r in first.eval} & {r["prompt"] for r in first.train}
    (tmp_path / "rm").mkdir()
    pd.DataFrame([{"input": "s\nq", "chosen": "a", "rejected": "b"}] * 3).to_parquet(tmp_path / "rm" / "train.parquet")
    pd.DataFrame([{"input": "s\nq2", "chosen": "a", "rejected": "b"}]).to_parquet(tmp_path / "rm" / "test.parquet")
    rm = load_split("rm", 0.5, 7, root=tmp_path)
    assert len(rm.train) == 3 and [r["input"] for r in rm.eval] == ["s\nq2"]


class _NoSystemTokenizer:
    """A stand-in whose chat template has no system role (Mistral's, Gemma's)."""

    chat_template = "{{ messages }}"
    eos_token = "</s>"

    def apply_chat_template(self, *args, **kwargs):
        raise ValueError("System role not supported")


def test_rows_become_trl_rows_with_the_system_folded_when_the_template_lacks_it() -> None:
    row = {
        "system": "Be terse.",
        "prompt": "Hi?",
        "output": "Hi.",
        "chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hi."}],
        "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}],
    }
    tokenizer = _NoSystemTokenizer()
    assert sft_example(row, tokenizer, "chat_template", True)["messages"] == [
        {"role": "user", "content": "Be terse.\nHi?"},
        {"role": "assistant", "content": "Hi."},
    ]
    pair = preference_example(row, tokenizer, "chat_template")
    assert pair["chosen"] == [{"role": "assistant", "content": "Hi."}]
    assert pair["rejected"] == [{"role": "assistant", "content": "Go away."}]
    literal = preference_example(row, tokenizer, "mistral_inst")
    assert literal == {"prompt": "[INST] Be terse.\nHi? [/INST]", "chosen": " Hi.", "rejected": " Go away."}
    no_system = sft_example({**row, "system": ""}, tokenizer, "mistral_inst", False)
    assert no_system == {"prompt": "[INST] Hi? [/INST]", "completion": " Hi."}


def test_recipe_settings_merge_common_method_and_tuned_values() -> None:
    params = profile("ci")
    dpo = resolve(params, "dpo")
    assert (dpo.learning_rate, dpo.max_steps, dpo.max_length) == (5e-5, 2, 256)
    tuned = resolve(params, "sft", {"learning_rate": 1e-3, "lora_r": 4})
    assert tuned.learning_rate == 1e-3 and (tuned.lora.r, tuned.lora.alpha) == (4, 8)
    with pytest.raises(JanusError, match="unknown tuned parameter"):
        resolve(params, "sft", {"beta": 0.5})


def test_every_recipe_builds_its_trainer_in_the_one_shape_the_frame_trains() -> None:
    """SFT, DPO, ORPO and the RM take the same arguments and return a BuiltTrainer: one frame
    (run_recipe.fit: callbacks, trainer config logging, saving, the record) trains them all."""
    import inspect

    from janus_align.train import train_dpo, train_orpo, train_rm, train_sft
    from janus_align.train.run_recipe import TrainerBuilder

    shape = [name for name in inspect.signature(TrainerBuilder.__call__).parameters if name != "self"]
    for module in (train_sft, train_dpo, train_orpo, train_rm):
        signature = inspect.signature(module.build_trainer)
        assert list(signature.parameters) == shape, module.__name__
        assert signature.return_annotation == "BuiltTrainer", module.__name__


def test_paper_profile_dry_run_builds_the_trainer_config_and_wires_deepspeed() -> None:
    from accelerate.commands.config.config_args import ClusterConfig
    from trl import DPOConfig, SFTConfig

    params = profile("paper")
    sft = resolve(params, "sft")
    kwargs = training_args(sft, params.seed, "/tmp/janus-dry-run", has_eval=True)
    assert (kwargs["learning_rate"], kwargs["num_train_epochs"], kwargs["max_steps"]) == (5e-6, 4.0, -1)
    assert (kwargs["per_device_train_batch_size"], kwargs["gradient_accumulation_steps"]) == (2, 4)
    assert kwargs["bf16"] and not kwargs["use_cpu"] and kwargs["gradient_checkpointing"]
    assert (kwargs["lr_scheduler_type"], kwargs["warmup_steps"]) == ("cosine", 10)
    assert sft.max_length == 8192 and not sft.lora.enabled and params.train.common.packing
    # Every key is a real field: the configs build (on CPU only with use_cpu, as bf16 needs a GPU).
    config = SFTConfig(**{**kwargs, "use_cpu": True}, max_length=sft.max_length, packing=True)
    assert config.gradient_accumulation_steps == 4 and config.packing
    dpo = resolve(params, "dpo")
    assert DPOConfig(**{**training_args(dpo, params.seed, "/tmp/x", False), "use_cpu": True}, beta=dpo.beta).beta == 0.1
    assert (dpo.learning_rate, dpo.epochs, dpo.max_length) == (5e-7, 2.0, 2048)

    assert launch.is_distributed(params)
    command = launch.launch_command("train_sft", "params.json", params)
    assert command[command.index("--num_processes") + 1] == "4"
    config_file = Path(command[command.index("--config_file") + 1])
    assert config_file == launch.ACCELERATE_DIR / "deepspeed_zero3.yaml"
    assert command[-3:] == ["janus_align.train.launch", "train_sft", "params.json"]
    zero3 = ClusterConfig.from_yaml_file(config_file)
    assert zero3.distributed_type == "DEEPSPEED" and zero3.deepspeed_config["zero_stage"] == 3
    assert zero3.deepspeed_config["zero3_save_16bit_model"]  # the stage saves a plain checkpoint
    fsdp = ClusterConfig.from_yaml_file(launch.accelerate_config("fsdp"))
    assert fsdp.distributed_type == "FSDP" and fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    for path in launch.ACCELERATE_DIR.glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["mixed_precision"] == "bf16"


def test_a_worker_process_does_not_relaunch(monkeypatch: pytest.MonkeyPatch) -> None:
    params = profile("paper")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not launch.is_distributed(params)
    assert not launch.is_distributed(profile("ci"))


def test_deepspeed_missing_on_a_cpu_setup_is_a_clear_error_before_any_worker_starts() -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here (a GPU machine)")
    with pytest.raises(JanusError, match=r"needs the deepspeed package.*requirements-gpu\.txt"):
        launch.require_backend("deepspeed_zero3")
    launch.require_backend("fsdp")  # torch's own FSDP needs nothing more
