"""Seconds per request of the served champion (`mlflow models serve`), before and after the fix.

    python benchmarks/serving.py --checkpoint artifacts/models/base

Logs the checkpoint as the Janus chat model into a throwaway MLflow store, registers it with
alias `champion`, and serves `models:/janus@champion` with the README's command
(`mlflow models serve --env-manager local`, MLflow's default of one uvicorn worker per core).
Then it sends the README's request (`max_new_tokens` 48, temperature 0.7) once, as a first
request, and `--warm` more times with other questions (the model's in-memory request cache
would answer a repeated one).

Two servers, one after the other, in this one invocation:
- before: the OpenMP runtime starts without OMP_WAIT_POLICY, as it did for every served model
  until the chat model's entry (registry/chat_model_code.py) set it. Reproduced by importing
  torch from a `sitecustomize` before anything else, so the entry's setting comes too late.
- after: the served model as it is now.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

QUESTIONS = ["What is DVC?", "What is MLflow?", "What is a reward model?", "Why use a system message?"]
SYSTEM = "You answer in one sentence, like a pirate."


def register_champion(checkpoint: Path, store: Path) -> str:
    import mlflow

    from janus_align.config import Params
    from janus_align.registry.chat_model import log_chat_model

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    with mlflow.start_run():
        uri = log_chat_model(checkpoint, "chat_template", Params())
    version = mlflow.register_model(uri, "janus")
    mlflow.MlflowClient().set_registered_model_alias("janus", "champion", version.version)
    return "models:/janus@champion"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ask(port: int, question: str, max_new_tokens: int) -> tuple[float, str]:
    body = {
        "inputs": [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]}],
        "params": {"max_new_tokens": max_new_tokens, "temperature": 0.7},
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())["predictions"][0]
    return time.perf_counter() - started, answer


def serve_and_measure(
    uri: str, store: Path, mode: str, warm: int, max_new_tokens: int, tokens: Any
) -> dict[str, object]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    env.pop("OMP_WAIT_POLICY", None)  # what a user's shell has: `mlflow` is not the `janus` CLI
    if mode == "before":
        early = store / "torch-first"
        early.mkdir(exist_ok=True)
        (early / "sitecustomize.py").write_text("import torch  # the OpenMP runtime starts here, unset\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(early), env.get("PYTHONPATH")]))
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local"]
    started = time.perf_counter()
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"mlflow models serve exited {server.returncode}") from None
                time.sleep(0.5)
        ready_s = time.perf_counter() - started
        first_s, first_answer = ask(port, QUESTIONS[0], max_new_tokens)
        warm = [ask(port, QUESTIONS[1 + i % (len(QUESTIONS) - 1)] + f" ({i})", max_new_tokens) for i in range(warm)]
    finally:
        os.killpg(server.pid, 15)  # the mlflow CLI, uvicorn and its workers
        server.wait(timeout=60)
    warm_s = [seconds for seconds, _ in warm]
    warm_tokens = sum(tokens(answer) for _, answer in warm)
    return {
        "mode": mode,
        "ready_s": round(ready_s, 1),
        "first_s": round(first_s, 2),
        "first_tokens": tokens(first_answer),
        "warm_s": [round(s, 2) for s in warm_s],
        "warm_median_s": round(statistics.median(warm_s), 2) if warm_s else None,
        "warm_tok_per_s": round(warm_tokens / sum(warm_s), 1) if warm_s else None,
        "first_answer": first_answer,
    }


def main() -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("artifacts/models/base"))
    parser.add_argument("--warm", type=int, default=4, help="requests after the first one")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="janus-serving-") as tmp:
        store = Path(tmp)
        uri = register_champion(args.checkpoint.resolve(), store)
        tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
        tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        rows = [
            serve_and_measure(uri, store, mode, args.warm, args.max_new_tokens, tokens) for mode in ("before", "after")
        ]
    print(f"checkpoint {args.checkpoint}, {os.cpu_count()} cores, load {load:.2f} at start")
    print("mode | server ready | first request (tokens) | warm median | warm tok/s | warm requests")
    for row in rows:
        print(
            f"{row['mode']} | {row['ready_s']} s | {row['first_s']} s ({row['first_tokens']}) | "
            f"{row['warm_median_s']} s | {row['warm_tok_per_s']} | {row['warm_s']}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
