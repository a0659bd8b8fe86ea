"""The multi-GPU training configs, checked where a CPU can check them.

- FSDP: `janus train_sft` with `distributed: fsdp, num_processes: 2` goes through the real
  `accelerate launch` path with the repo's fsdp.yaml, on two CPU processes over gloo (slow).
  accelerate (1.15) shards with FSDP only over accelerators and runs CPU workers as DDP, so
  what this shows is the wiring (config file, two workers, rank 0 logging and saving a plain
  checkpoint), not the sharding; the FSDP plugin the yaml describes is built separately.
- DeepSpeed ZeRO-3: the config accelerate hands DeepSpeed (built from deepspeed_zero3.yaml by
  accelerate's DeepSpeedPlugin, its "auto" fields filled from params as the HF Trainer fills
  them) is validated by DeepSpeed's own config class when deepspeed is installed (GPU machines,
  requirements-gpu.txt), and by a schema of the fields used otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import clone_project, run_janus
from janus_align.config import Params
from janus_align.train import launch
from test_train_config import profile
from test_train_recipes import write_collection


def accelerate_yaml(kind: str) -> dict[str, Any]:
    return yaml.safe_load(launch.accelerate_config(kind).read_text())


def test_the_fsdp_yaml_builds_accelerates_fsdp2_plugin() -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin

    fsdp = accelerate_yaml("fsdp")["fsdp_config"]
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["fsdp_version"],
        auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower(),
        reshard_after_forward=fsdp["fsdp_reshard_after_forward"],
        state_dict_type=fsdp["fsdp_state_dict_type"],
        cpu_ram_efficient_loading=fsdp["fsdp_cpu_ram_efficient_loading"],
        activation_checkpointing=fsdp["fsdp_activation_checkpointing"],
    )
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)  # rank 0 saves a plain checkpoint


def zero3_config(params: Params, world_size: int) -> dict[str, Any]:
    """What accelerate hands DeepSpeed for the paper profile: the plugin's config from the yaml,
    its "auto" batch fields filled from params (as the HF Trainer's DeepSpeed integration does)."""
    from accelerate.utils import DeepSpeedPlugin

    ds = accelerate_yaml("deepspeed_zero3")["deepspeed_config"]
    plugin = DeepSpeedPlugin(
        zero_stage=ds["zero_stage"],
        offload_optimizer_device=ds["offload_optimizer_device"],
        offload_param_device=ds["offload_param_device"],
        zero3_init_flag=ds["zero3_init_flag"],
        zero3_save_16bit_model=ds["zero3_save_16bit_model"],
    )
    config = dict(plugin.deepspeed_config)
    common = params.train.common
    micro, accumulation = common.per_device_batch_size, common.gradient_accumulation_steps
    config.update(
        train_micro_batch_size_per_gpu=micro,
        gradient_accumulation_steps=accumulation,
        train_batch_size=micro * accumulation * world_size,
        gradient_clipping=1.0,  # TrainingArguments' max_grad_norm
        steps_per_print=2**31 - 1,  # accelerate's inf: never print
        bf16={"enabled": common.bf16},
    )
    return config


OFFLOAD = {
    "type": "object",
    "properties": {"device": {"enum": ["none", "cpu", "nvme"]}, "nvme_path": {"type": ["string", "null"]}},
    "required": ["device"],
}
ZERO3_SCHEMA = {
    "type": "object",
    "properties": {
        "train_batch_size": {"type": "integer", "minimum": 1},
        "train_micro_batch_size_per_gpu": {"type": "integer", "minimum": 1},
        "gradient_accumulation_steps": {"type": "integer", "minimum": 1},
        "gradient_clipping": {"type": "number", "minimum": 0},
        "steps_per_print": {"type": "integer", "minimum": 1},
        "bf16": {"type": "object", "properties": {"enabled": {"type": "boolean"}}, "additionalProperties": False},
        "zero_optimization": {
            "type": "object",
            "properties": {
                "stage": {"const": 3},
                "offload_optimizer": OFFLOAD,
                "offload_param": OFFLOAD,
                "stage3_gather_16bit_weights_on_model_save": {"type": "boolean"},
            },
            "required": ["stage"],
            "additionalProperties": False,
        },
    },
    "required": [
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "zero_optimization",
    ],
    "additionalProperties": False,
}


def test_the_zero3_config_is_valid_for_deepspeed() -> None:
    params = profile("paper")
    world = params.train.common.num_processes
    config = zero3_config(params, world)
    assert "auto" not in str(config)
    assert config["train_batch_size"] == 2 * 4 * 4  # micro batch x accumulation x the paper's 4 GPUs
    jsonschema.validate(config, ZERO3_SCHEMA)  # the schema check, which runs everywhere
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    try:
        from deepspeed.runtime.config import DeepSpeedConfig
    except ImportError:
        return  # no deepspeed here (the CPU setup): the schema above is the check
    checked = DeepSpeedConfig(config)
    assert checked.zero_optimization_stage == 3 and checked.train_batch_size == config["train_batch_size"]


@pytest.mark.slow
def test_fsdp_through_accelerate_launch_trains_one_sft_step_on_two_cpu_processes(ci_base_project, tmp_path: Path):
    project = clone_project(ci_base_project, tmp_path / "project")
    write_collection(project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["common"].update(distributed="fsdp", num_processes=2, max_steps=1, eval_steps=0)
    params["train"]["common"]["lora"]["enabled"] = False  # full fine-tuning, what FSDP is for
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = run_janus(project, "train_sft", timeout=900)
    output = done.stdout + done.stderr
    assert "train_sft: worker 0 of 2 (fsdp)" in output and "train_sft: worker 1 of 2 (fsdp)" in output
    assert "runs the fsdp workers as DDP over gloo" in output  # said, not silent
    checkpoint = project / "artifacts" / "models" / "sft"
    assert (checkpoint / "config.json").is_file() and list(checkpoint.glob("*.safetensors"))
    assert "train_sft: artifacts/models/sft" in output  # rank 0 wrote it and the stage reported it
