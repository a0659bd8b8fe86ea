"""`janus preload -- COMMAND`: `janus` commands started by COMMAND run in forked children of one
preloaded process, with the caller's folder, output and exit status, and die with their caller.

One preloading process serves the whole scenario (its imports take ~25 s): the scenario runs as
its COMMAND and prints what it saw as JSON lines, which the test then checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

from conftest import BIN, janus_env, make_project, run_janus

SCENARIO = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    from pathlib import Path
    from janus_align import preload

    socket_path = os.environ[preload.SOCKET_ENV]
    # Nothing is imported until a `janus` command asks: this first one runs in-process (None).
    print(json.dumps({"first": preload.delegate(["check"])}), flush=True)
    deadline = time.time() + 300
    while not os.path.exists(socket_path) and time.time() < deadline:  # bound once imports are done
        time.sleep(0.2)

    def report(**seen):
        print(json.dumps(seen), flush=True)

    def served_children():
        server, me = os.getppid(), os.getpid()
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == server and int(stat.parent.name) != me:
                found[int(stat.parent.name)] = fields[0]
        return found

    # In the folder of the caller, not of the server: the other project uses another profile.
    os.chdir(sys.argv[1])
    report(check=preload.delegate(["check"]))
    report(missing_model=preload.delegate(["generate", "--model", "nope"]))

    victim = subprocess.Popen(
        [sys.executable, "-c", "import sys; from janus_align.preload import delegate; "
         "sys.exit(delegate(['chat', '--model', 'artifacts/models/base', '--max-new-tokens', '4000', 'Tell a story.']))"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children = {}
    while not children and time.time() < deadline:
        children = {pid: state for pid, state in served_children().items() if state != "Z"}
        time.sleep(0.1)
    time.sleep(1.0)
    alive_before = [pid for pid, state in served_children().items() if pid in children and state != "Z"]
    victim.kill()
    victim.wait()
    gone_by = None
    for tick in range(100):
        if not any(pid in children and state != "Z" for pid, state in served_children().items()):
            gone_by = tick / 10
            break
        time.sleep(0.1)
    report(served_child=len(children), alive_before_kill=len(alive_before), gone_after_s=gone_by)
    """
)


def run_preload(cwd: Path, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`janus preload -- COMMAND` in `cwd`, as a user runs it; output captured."""
    return subprocess.run(
        [str(BIN / "janus"), "preload", "--", *command],
        cwd=cwd,
        env=janus_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_preloaded_commands_behave_like_their_callers_and_die_with_them(ci_base_project: Path, tmp_path: Path) -> None:
    server_project = ci_base_project
    caller_project = make_project(tmp_path / "default-profile", profile=None)
    shutil.copytree(server_project / "artifacts" / "models" / "base", caller_project / "artifacts" / "models" / "base")
    scenario = tmp_path / "scenario.py"
    scenario.write_text(SCENARIO)

    done = run_preload(server_project, str(BIN / "python"), str(scenario), str(caller_project))

    assert done.returncode == 0, done.stderr[-4000:]
    assert "janus preload: serving after" in done.stderr
    seen = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            seen.update(json.loads(line))
    # The first command found no server; it asked for one, and the later ones were served
    # (delegate answered an exit status rather than None), in the caller's folder.
    assert seen["first"] is None
    assert seen["check"] == 0
    assert "params.yaml: valid (profile default)" in done.stdout
    # A failing command's status and message come back as the caller's.
    assert seen["missing_model"] == 2
    assert "error: generate --model nope" in done.stderr
    # The served child ran, and was gone soon after its caller was SIGKILLed.
    assert seen["served_child"] == 1 and seen["alive_before_kill"] == 1
    assert seen["gone_after_s"] is not None and seen["gone_after_s"] < 5


def test_preload_without_a_command_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "janus"), "preload"], cwd=tmp_path, env=janus_env(), capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "name the command to run" in done.stderr
    missing = run_preload(tmp_path, "no-such-command-xyz")
    assert missing.returncode == 2
    assert "cannot run 'no-such-command-xyz'" in missing.stderr


def test_preload_returns_the_exit_status_of_its_command(tmp_path: Path) -> None:
    done = run_preload(tmp_path, "sh", "-c", "exit 7")
    assert done.returncode == 7


def test_a_command_that_runs_no_janus_stage_imports_nothing(tmp_path: Path) -> None:
    """A no-op `dvc repro` runs no `janus` command, so the preloading process (COMMAND's parent)
    must not spend seconds importing torch meanwhile: after 8 s it has not loaded libtorch."""
    probe = "import os, time; time.sleep(8); print('libtorch' in open(f'/proc/{os.getppid()}/maps').read())"
    done = run_preload(tmp_path, str(BIN / "python"), "-c", probe)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "False"
    assert "janus preload: serving" not in done.stderr


def test_stages_that_compile_grammars_under_preload_print_no_nanobind_line(ci_project: Path) -> None:
    """`make repro` ended with ~40 lines of `nanobind: leaked ...` from the preloading process:
    the imports it froze (gc.freeze, for its children) were never freed at exit. Here the first
    stage (preferences: a JSON-schema grammar) runs in-process, the second (system_messages: a
    regex grammar) in a preloaded child, and then the preloading process exits."""
    run_janus(ci_project, "instructions")
    script = (
        "janus preferences"
        ' && n=0 && while [ ! -S "$JANUS_PRELOAD_SOCKET" ] && [ $n -lt 1500 ]; do sleep 0.2; n=$((n+1)); done'
        " && janus system_messages"
    )
    done = run_preload(ci_project, "sh", "-c", script, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "janus preload: serving after" in done.stderr
    assert "system_messages:" in done.stdout
    output = done.stdout + done.stderr
    assert "nanobind" not in output, [line for line in output.splitlines() if "nanobind" in line][:5]
