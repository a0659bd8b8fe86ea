"""`janus preload -- COMMAND`: run COMMAND (normally `dvc repro`) with every `janus` command it
starts forked from one process that has already imported torch, transformers, TRL, MLflow,
Great Expectations and the stage modules.

Why: DVC runs each stage as a fresh process, and a fresh Python spends 8-15 s importing the same
libraries before it does any work: about 4 of the default pipeline's 25 minutes on 2 cores
(BENCHMARKS.md). The remedy is the one of Emacs' server, Nailgun for the JVM or Spring for Rails:
import once, fork per command.

How: this process starts COMMAND with the path of a Unix socket (in a private temporary folder)
in `JANUS_PRELOAD_SOCKET` and waits. The first `janus` command that finds no server there leaves
a mark beside the socket and runs in-process; on that mark this process imports the modules,
then listens. So a COMMAND that runs no stage (a `dvc repro` with nothing to do) costs no import
(BENCHMARKS.md: a no-op within a second of plain `dvc repro`). A `janus` command that finds the
variable sends its arguments, working directory, environment and its stdin/stdout/stderr over
the socket; this process forks, and the child runs the command as the caller would have: same
folder, environment and descriptors, killed if the caller dies, its exit status returned as the
caller's. Without the variable, or while the socket does not answer yet (the imports run while
COMMAND's first stage does), `janus` runs in-process as always: results are the same either way,
only the startup differs.

Forking is safe only while this process has run no torch computation and opened no database
(OpenMP thread pools and connections do not survive a fork) and runs no other Python thread: it
imports modules and nothing else, and serves nothing if an import started a Python thread. The
native threads that torch and pyarrow's allocator start at import handle fork themselves, as
they must for torch's DataLoader, which forks its workers the same way.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

from janus_align.errors import JanusError
from janus_align.stages import STAGES

SOCKET_ENV = "JANUS_PRELOAD_SOCKET"
# What the stages import, heavy first; "module:attribute" resolves a lazily imported attribute.
PRELOADED = (
    "torch",
    "transformers.modeling_utils",
    "transformers:AutoModelForCausalLM",
    "transformers:AutoModelForSequenceClassification",
    "transformers:AutoTokenizer",
    "xgrammar",
    "mlflow",
    "mlflow.transformers",
    "mlflow.data",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "datasets",
    "peft",
    "trl:SFTTrainer",
    "trl:DPOTrainer",
    "trl:RewardTrainer",
    "trl.experimental.orpo",
    "optuna",
    "great_expectations",
    "pandas",
    "pyarrow.parquet",
)
_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_POLL_S = 0.05
_WANTED = "wanted"  # created beside the socket by the first `janus` command that finds no server
_serving_child = False  # set in a forked child: it runs its command itself


def delegate(argv: list[str]) -> int | None:
    """Run `janus argv` in a child of the preloading process: its exit status, or None when
    there is no preloading process to ask (the caller then runs the command itself)."""
    path = os.environ.get(SOCKET_ENV)
    if not path or _serving_child:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError:
        connection.close()
        ask_to_preload()
        return None
    with connection:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        socket.send_fds(connection, [b"J"], _stdio())
        connection.sendall(json.dumps(request).encode("utf-8") + b"\n")
        replies = connection.makefile("rb")
        started = _read(replies)
        if started is None:
            print("janus preload: the preloading process did not start the command", file=sys.stderr)
            return 1
        child = int(started["pid"])
        for signum in _FORWARDED_SIGNALS:
            signal.signal(signum, lambda number, _frame: _kill(child, number))
        finished = _read(replies)
    if finished is None:
        print("janus preload: the preloading process went away before the command ended", file=sys.stderr)
        return 1
    return int(finished["exit"])


def serve(command: list[str], run: Callable[[list[str]], int]) -> int:
    """Run `command` with `janus` commands served by this process; return its exit status.

    A served command runs as `run(argv)` in a forked child (the CLI passes its `main`: this
    module does not import the CLI, which imports it).
    """
    folder = tempfile.mkdtemp(prefix="janus-preload-")  # mode 0700: only this user can connect
    path = os.path.join(folder, "socket")
    try:
        process = subprocess.Popen(command, env={**os.environ, SOCKET_ENV: path})
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise JanusError(f"janus preload: cannot run {command[0]!r}: {exc.strerror}") from None
    children: dict[int, socket.socket] = {}
    listener: socket.socket | None = None
    try:
        # Nothing is imported until a `janus` command asks (and runs in-process meanwhile):
        # a COMMAND that runs no stage, such as a no-op `dvc repro`, costs no import at all.
        while process.poll() is None and not os.path.exists(os.path.join(folder, _WANTED)):
            time.sleep(_POLL_S)
        started = time.perf_counter()
        _import_all(process)
        if process.poll() is not None:
            pass  # COMMAND ended during the imports: nothing left to serve
        elif threading.active_count() > 1:
            print("janus preload: an import started a thread, so forking is unsafe; not serving", file=sys.stderr)
        else:
            # Children's collections then skip the imported objects (and leave their pages shared).
            gc.freeze()
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(8)
            print(f"janus preload: serving after {time.perf_counter() - started:.1f} s of imports", file=sys.stderr)
        while process.poll() is None:
            if listener is not None and select.select([listener], [], [], _POLL_S)[0]:
                _start_child(listener, children, run)
            elif listener is None:
                time.sleep(_POLL_S)
            _report_finished(children)
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group: COMMAND stops by itself
        process.wait()
    finally:
        # Frozen objects are never collected, not even at exit: triton's nanobind extension (which
        # torch imports) then finds its objects alive and prints ~40 lines of "nanobind: leaked".
        gc.unfreeze()
        if listener is not None:
            listener.close()
        shutil.rmtree(folder, ignore_errors=True)
        for child, connection in children.items():  # callers that outlived COMMAND
            _kill(child, signal.SIGTERM)
            connection.close()
    return process.returncode


def ask_to_preload() -> None:
    """Tell the preloading process (if any) that `janus` commands have started, so it imports now.

    `delegate` does this when it finds no server yet; a caller that wants to be served from its
    first command (benchmarks/stage_startup.py) calls it, then waits for the socket.
    """
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return
    try:
        os.close(os.open(os.path.join(os.path.dirname(path), _WANTED), os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        pass  # the folder is gone: COMMAND is ending


def _import_all(process: subprocess.Popen) -> None:
    """Import what the stages need, stopping early if `process` has ended."""
    for name in PRELOADED + tuple(stage.module for stage in STAGES.values()):
        if process.poll() is not None:
            return
        module, _, attribute = name.partition(":")
        try:
            loaded = importlib.import_module(module)
            if attribute:
                getattr(loaded, attribute)
        except Exception as exc:  # noqa: BLE001 - a stage that needs it will say so itself
            print(f"janus preload: {name} not preloaded ({type(exc).__name__}: {exc})", file=sys.stderr)


def _start_child(listener: socket.socket, children: dict[int, socket.socket], run: Callable[[list[str]], int]) -> None:
    connection, _ = listener.accept()
    try:
        _, fds, _, _ = socket.recv_fds(connection, 1, 3)
        request = json.loads(connection.makefile("rb").readline())
    except (OSError, ValueError):
        connection.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        _run_child(connection, fds, request, run)  # never returns
    for fd in fds:
        os.close(fd)
    _send(connection, {"pid": child})
    children[child] = connection


def _run_child(
    connection: socket.socket, fds: list[int], request: dict[str, Any], run: Callable[[list[str]], int]
) -> None:
    global _serving_child
    _serving_child = True
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for signum in _FORWARDED_SIGNALS:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        threading.Thread(target=_die_with_caller, args=(connection,), daemon=True).start()
        sys.argv = ["janus", *request["argv"]]
        code = run(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the child must exit with a status, whatever happened
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()  # what a normal interpreter exit runs (MLflow, logging)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def _die_with_caller(connection: socket.socket) -> None:
    """The caller sends nothing after its request: end of file means it died (say, SIGKILL)."""
    try:
        while connection.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _report_finished(children: dict[int, socket.socket]) -> None:
    for child in list(children):
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            connection = children.pop(child)
            _send(connection, {"exit": code if code >= 0 else 128 - code})
            connection.close()


def _stdio() -> list[int]:
    """This process's stdin, stdout and stderr; /dev/null for any that is closed."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def _send(connection: socket.socket, message: dict[str, Any]) -> None:
    try:
        connection.sendall(json.dumps(message).encode("utf-8") + b"\n")
    except OSError:
        pass  # the caller is gone; its child dies with it


def _read(replies: BinaryIO) -> dict[str, Any] | None:
    line = replies.readline()
    return json.loads(line) if line else None


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
