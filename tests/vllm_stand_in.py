"""A stand-in for `vllm serve` (tests/test_vllm_server.py): vLLM's command line, a real HTTP server.

    python tests/vllm_stand_in.py serve MODEL --host 127.0.0.1 --port N [vllm's other flags]

It serves tests/loopback_server.py's OpenAI-compatible server on that port, whose /health
answers 503 for $STAND_IN_LOAD_S seconds (vLLM while it loads), then 200. Its argv (and pid) and each
request body are appended as JSON lines to $STAND_IN_RECORD. With $STAND_IN_CRASH set it prints
an error and exits 1 before listening (a server that fails while loading).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from loopback_server import LoopbackServer, default_answer


def record(entry: dict[str, Any]) -> None:
    if os.environ.get("STAND_IN_RECORD"):
        with open(os.environ["STAND_IN_RECORD"], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def answer(body: dict[str, Any]) -> str:
    record({"body": body})
    return default_answer(body)


def main(argv: list[str]) -> None:
    record({"argv": argv, "pid": os.getpid()})
    print(f"stand-in vllm: {' '.join(argv)}", flush=True)
    if os.environ.get("STAND_IN_CRASH"):
        print("torch.OutOfMemoryError: CUDA out of memory (stand-in)", flush=True)
        sys.exit(1)
    server = LoopbackServer(answer=answer, port=int(argv[argv.index("--port") + 1]))
    server.loading_until = time.monotonic() + float(os.environ.get("STAND_IN_LOAD_S", "0"))
    with server:
        threading.Event().wait()  # serve until terminated, as vllm serve does


if __name__ == "__main__":
    main(sys.argv[1:])
