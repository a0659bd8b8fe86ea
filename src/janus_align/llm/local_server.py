"""The lifecycle of a model server of our own on loopback (llama.cpp's, vLLM's): one owner.

A stage's backend starts the server's process with its output in a log file, waits until its
health check answers 200, and stops it on close. The child also dies with this process: the
kernel sends it SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a killed `dvc repro`
leaves no server holding a port or a GPU behind. A server that exits while loading is
reported with the end of its log, which is where it says why.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from janus_align.config.schema import FREE, OpenAISettings
from janus_align.errors import JanusError

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM when the parent dies.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file ("(no log)" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerProcess:
    """A server started by `command(port)` on a free loopback port, healthy once `start` returns.

    `error` is the JanusError subclass raised (with the log's tail) when it exits while loading
    or stays unhealthy past the timeout; the process is stopped before raising.
    """

    def __init__(
        self,
        name: str,
        command: Callable[[int], list[str]],
        log: Path,
        error: type[JanusError],
        health_path: str = "/health",
        stop_timeout_s: float = 10.0,
    ):
        self.name = name
        self.log = log
        self.error = error
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._health_url = f"{self.base_url}{health_path}"
        self._stop_timeout_s = stop_timeout_s
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            self.process = subprocess.Popen(
                command(self.port),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )

    def wait_until_healthy(self, timeout_s: float, loading: str) -> None:
        """Return once the health check answers 200; raise `error` if the server exits first or
        is not healthy within `timeout_s` (it is stopped either way). `loading` names what it loads."""
        try:
            self._wait(timeout_s, loading)
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout_s: float, loading: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self.error(
                    f"{self.name} exited with code {self.process.returncode} while loading {loading}; "
                    f"its log ({self.log}) ends with:\n{log_tail(self.log)}"
                )
            try:
                with urllib.request.urlopen(self._health_url, timeout=2.0):
                    return  # 200: the model is loaded (503 while loading raises HTTPError)
            except (urllib.error.URLError, ConnectionError):
                pass  # not listening yet, or still loading
            time.sleep(0.2)
        raise self.error(
            f"{self.name} did not become healthy within {timeout_s:.0f} s while loading {loading}; "
            f"its log ({self.log}) ends with:\n{log_tail(self.log)}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout_s`; stopping twice is harmless."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def served_settings(served_model: str, base_url: str, config: Any) -> OpenAISettings:
    """How the openai backend talks to a server of ours on loopback (llama.cpp, vLLM): the
    stage's width, timeouts, retries and sampling, at no price."""
    return OpenAISettings(
        model=served_model,
        base_url=f"{base_url}/v1",
        max_concurrency=config.max_concurrency,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        sampling=config.sampling,
        prices=FREE,
    )
