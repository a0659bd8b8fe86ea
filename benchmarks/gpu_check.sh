#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): a random Mistral-7B on one GPU, one bf16 full SFT step
# and one LoRA step packed to 8,192 tokens with gradient checkpointing, and generation throughput
# of the project's GPU path against batched model.generate; the figures go to one JSON file.
# Made for a machine with one GPU and no network, where torch, transformers, accelerate and peft
# are installed: what else it needs travels as wheels in $WHEELS (default .whl/ in the repo).
#
#   bash benchmarks/gpu_check.sh --fetch-wheels   # here, with network: the wheels into $WHEELS
#   bash benchmarks/gpu_check.sh [--out FILE]     # on the GPU machine (FILE: $OUT/gpu_check.json
#                                                 # when $OUT is set, else gpu_check.json); ~3-5 min
#   bash benchmarks/gpu_check.sh --tiny           # anywhere: the same code on a tiny model, on CPU
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
PY=${PYTHON:-python3}
# The GPU image lacks these (TRL and what the project's modules import); versions are this
# venv's, so the check runs the code the tests ran. --no-deps: each need is named here.
NEEDS="trl datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection
jsonschema jsonschema-specifications referencing rpds-py"

if [ "${1:-}" = "--fetch-wheels" ]; then
  VENV_PY=${VENV_PY:-.venv/bin/python}
  pins=$("$VENV_PY" -c 'import sys
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' $NEEDS)
  mkdir -p "$WHEELS"
  # The GPU image's Python is 3.12 on x86-64 (the device notes); binary wheels for it, the rest pure.
  "$VENV_PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" $pins
  ls -la "$WHEELS"
  exit 0
fi

if compgen -G "$WHEELS/*.whl" >/dev/null; then
  SITE=$(mktemp -d /tmp/janus-gpu-site.XXXXXX)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
