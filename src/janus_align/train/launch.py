"""Multi-GPU training: a stage re-launches its training under `accelerate launch`.

`dvc repro` runs `janus train_sft` as one process. With `train.common.distributed` set
(deepspeed_zero3 or fsdp, the paper profile), the stage keeps its MLflow run and data logging in
that process and starts `accelerate launch --config_file <repo yaml> --num_processes N -m
janus_align.train.launch STAGE PARAMS_JSON`; every worker trains, rank 0 logs step metrics into
the stage's run (its id travels in JANUS_MLFLOW_RUN_ID) and writes the checkpoint.

    python -m janus_align.train.launch train_sft /tmp/params.json   # what each worker runs
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from janus_align.config import Params
from janus_align.errors import JanusError

ACCELERATE_DIR = Path(__file__).parent / "accelerate"
ACCELERATE_CONFIGS = {"deepspeed_zero3": "deepspeed_zero3.yaml", "fsdp": "fsdp.yaml"}
RUN_ID_ENV = "JANUS_MLFLOW_RUN_ID"


def is_distributed(params: Params) -> bool:
    """True when this process should start workers (not when it is one)."""
    return params.train.common.distributed != "none" and "LOCAL_RANK" not in os.environ


def accelerate_config(kind: str) -> Path:
    """The repo's accelerate config file for `train.common.distributed`."""
    if kind not in ACCELERATE_CONFIGS:
        raise JanusError(
            f"train.common.distributed: no accelerate config for {kind!r}; known: {sorted(ACCELERATE_CONFIGS)}"
        )
    return ACCELERATE_DIR / ACCELERATE_CONFIGS[kind]


def launch_command(stage: str, params_file: str | Path, params: Params) -> list[str]:
    """The `accelerate launch` command line that runs `stage`'s training on every process."""
    common = params.train.common
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_config(common.distributed)),
        "--num_processes",
        str(common.num_processes),
        "-m",
        "janus_align.train.launch",
        stage,
        str(params_file),
    ]


def require_backend(kind: str) -> None:
    """DeepSpeed is a GPU-machine extra (requirements-gpu.txt): say so before launching workers."""
    import importlib.util

    if kind == "deepspeed_zero3" and importlib.util.find_spec("deepspeed") is None:
        raise JanusError(
            "train.common.distributed: deepspeed_zero3 needs the deepspeed package, which the CPU "
            "setup does not install; on the GPU machine run "
            "`.venv/bin/pip install --no-build-isolation -r requirements-gpu.txt`, or set distributed: fsdp"
        )


def run_distributed(stage: str, params: Params) -> None:
    """Train `stage` under accelerate and wait; the caller's active MLflow run receives the metrics."""
    import mlflow

    require_backend(params.train.common.distributed)

    with tempfile.TemporaryDirectory(prefix="janus-launch-") as tmp:
        params_file = Path(tmp) / "params.json"
        params_file.write_text(params.model_dump_json(), encoding="utf-8")
        env = dict(os.environ)
        run = mlflow.active_run()
        if run is not None:
            env[RUN_ID_ENV] = run.info.run_id
        done = subprocess.run(launch_command(stage, params_file, params), env=env)
    if done.returncode != 0:
        raise JanusError(f"{stage}: `accelerate launch` exited {done.returncode} (see the worker output above)")


def _stage_function(stage: str):
    from janus_align.stages import STAGES

    module_name, fixed, _ = STAGES[stage]
    module = importlib.import_module(module_name)
    return lambda params: module.train(params, **fixed)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: train one stage with the params the launching stage wrote."""
    stage, params_file = (argv if argv is not None else sys.argv[1:])[:2]
    params = Params.model_validate_json(Path(params_file).read_text(encoding="utf-8"))
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    kind = params.train.common.distributed
    print(f"{stage}: worker {rank} of {world} ({kind})", flush=True)
    if kind == "fsdp" and rank == "0" and not _has_gpu():
        # accelerate shards with FSDP only over accelerators; CPU workers (gloo) train as DDP.
        print(f"{stage}: no GPU, so accelerate runs the fsdp workers as DDP over gloo (no sharding)", flush=True)
    run_id = os.environ.get(RUN_ID_ENV)
    if run_id and os.environ.get("RANK", "0") == "0":
        import mlflow

        from janus_align.tracking import configure

        configure(params)
        with mlflow.start_run(run_id=run_id):
            _stage_function(stage)(params)
    else:
        _stage_function(stage)(params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
