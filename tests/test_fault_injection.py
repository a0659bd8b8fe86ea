"""The fault-injection suite: a bad API hour, a killed run, two runs at once, a leaked key and broken
input files, each tried on real `janus` stages of a ci-profile project against a loopback
OpenAI-compatible server (tests/loopback_server.py) that injects the fault, then heals.

Teacher (stage `preferences`) and judge (stage `judge`) each meet every fault mode:
- transport faults (429 with Retry-After, 500, 503, a hang past `timeout_s`): survived by the
  SDK's retries, the stage exits 0;
- unusable answers (garbage, empty, off-schema, cut at the length limit, an HTML error page or a
  body that is not JSON with status 200, on every request): the stage stops with one `error:`
  line and no traceback; once the API heals, the same command succeeds (nothing unusable is
  served back from the request cache).
Then a SIGKILL at three points of a teacher stage and a re-run (no answered request paid again),
the same stage run twice at once on one request cache (each request sent once), the API key
looked for in every file and log of every project, and every bad input file of issue 17.
At the end it prints one line (pytest -s or the terminal summary):
`faults survived or stopped cleanly N/M, recovered after heal N/M, bad inputs with clear errors
N/M, repeated paid requests after SIGKILL N, secret leaks N`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench_samples import official_rows, write_jsonl
from conftest import BIN, SUMMARY_LINES, clone_project, janus_env, make_project, run_janus
from loopback_server import Fault, LoopbackServer, default_answer

pytestmark = pytest.mark.slow

MAX_RETRIES = 3
SECRET_ENV = "JANUS_FAULT_SUITE_KEY"
SECRET = "fault-suite-fake-key-" + os.urandom(12).hex()
ENV = {SECRET_ENV: SECRET, "OMP_NUM_THREADS": "1"}
TRANSPORT = {
    "429 with Retry-After": lambda: Fault.status_code(429, retry_after=0.2),
    "500": lambda: Fault.status_code(500),
    "503": lambda: Fault.status_code(503),
    "hang past timeout_s": lambda: Fault.hang(3.0),
}
UNUSABLE_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "garbage": lambda body: "I am sorry, as an AI I cannot do that.",
    "empty": lambda body: "",
    "off-schema JSON": lambda body: '{"answer": 3}',
    "cut at the length limit": lambda body: default_answer(body)[: max(1, len(default_answer(body)) // 2)],
}
UNUSABLE_BODY = {"HTML error page with 200": Fault.html, "non-JSON body with 200": Fault.broken_body}
FAULTS = [*TRANSPORT, *UNUSABLE_TEXT, *UNUSABLE_BODY]

OUTCOMES: dict[str, list[tuple[str, bool]]] = {"handled": [], "recovered": [], "bad_inputs": []}
COUNTS = {"repeated_after_kill": 0, "secret_leaks": 0}
PROJECTS: list[Path] = []
LOGS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def summary_line() -> Iterator[None]:
    yield

    def ratio(kind: str) -> str:
        results = OUTCOMES[kind]
        return f"{sum(ok for _, ok in results)}/{len(results)}"

    line = (
        f"faults survived or stopped cleanly {ratio('handled')}, recovered after heal {ratio('recovered')}, "
        f"bad inputs with clear errors {ratio('bad_inputs')}, repeated paid requests after SIGKILL "
        f"{COUNTS['repeated_after_kill']}, secret leaks {COUNTS['secret_leaks']}"
    )
    SUMMARY_LINES.append(f"RELIABILITY: {line}")  # printed at the end of the run (conftest)


class HealingServer(LoopbackServer):
    """A loopback server that answers `unusable` (or queues `fault`s) until `heal()`."""

    def __init__(self, unusable: Callable[[dict[str, Any]], str] | None = None, **kwargs: Any) -> None:
        self.unusable, self.healed = unusable, False
        super().__init__(answer=self._answer, **kwargs)

    def _answer(self, body: dict[str, Any]) -> str:
        if self.unusable is not None and not self.healed:
            return self.unusable(body)
        if "[RESULT]" in json.dumps(body) and body.get("response_format") is None:
            return "Feedback: clear and on topic. [RESULT] 4"
        return default_answer(body)

    def heal(self) -> None:
        self.healed = True
        self.clear_faults()


def _overlay(project: Path, section: str, base_url: str) -> None:
    """Point the teacher or the judge of `project` at the loopback server (a profile overlay)."""
    llm = {
        "backend": "openai",
        "model": f"{section}-model",
        "base_url": base_url,
        "api_key_env": SECRET_ENV,
        "max_retries": MAX_RETRIES,
        "timeout_s": 1.5,
        "max_concurrency": 4,
    }
    if section == "teacher":
        overlay = {"teacher": {**llm, "max_reasks": 1}}
    else:
        overlay = {"judge": {"llm": llm, "max_reasks": 1, "repeats": 1, "constrained": True}}
    (project / "profiles" / "faults.yaml").write_text(yaml.safe_dump(overlay))
    run_janus(project, "use-profile", "faults")


@pytest.fixture(scope="module")
def teacher_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("faults") / "teacher")
    run_janus(project, "instructions")
    instructions = project / "artifacts/synth/instructions.jsonl"
    instructions.write_text(instructions.read_text().splitlines()[0] + "\n")  # 3 requests a run
    return project


@pytest.fixture(scope="module")
def judge_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("faults") / "judge")
    rows = official_rows(2)
    write_jsonl(project / "artifacts/bench/bench.jsonl", rows)
    write_jsonl(
        project / "artifacts/eval/responses/base.jsonl",
        [{"id": r["id"], "source": r["source"], "model": "base", "response": "A fine answer."} for r in rows],
    )
    return project


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    done = run_janus(project, *args, check=False, timeout=600, **ENV)
    LOGS.append(done.stdout + done.stderr)
    return done


def _stopped_cleanly(done: subprocess.CompletedProcess) -> bool:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    return done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("target", ["teacher", "judge"])
@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_is_survived_or_stops_cleanly_and_the_healed_rerun_succeeds(
    fault: str, target: str, teacher_template: Path, judge_template: Path, tmp_path: Path
) -> None:
    template = teacher_template if target == "teacher" else judge_template
    project = clone_project(template, tmp_path / "project")
    PROJECTS.append(project)
    command = ["preferences"] if target == "teacher" else ["judge", "--model", "base"]
    case = f"{target}: {fault}"
    with HealingServer(unusable=UNUSABLE_TEXT.get(fault)) as server:
        if fault in TRANSPORT:
            # As many as a request may retry: whichever requests they hit, each gets through in the end.
            server.script(*[TRANSPORT[fault]() for _ in range(MAX_RETRIES)])
        elif fault in UNUSABLE_BODY:
            server.script(*[UNUSABLE_BODY[fault]() for _ in range(1000)])  # every request, until healed
        _overlay(project, target, server.base_url)
        first = _run(project, *command)
        if fault in TRANSPORT:
            handled = first.returncode == 0
            OUTCOMES["handled"].append((case, handled))
            assert handled, first.stderr[-3000:]
            return
        handled = _stopped_cleanly(first)
        OUTCOMES["handled"].append((case, handled))
        assert handled, f"{case}: exit {first.returncode}\n{first.stderr[-3000:]}"
        sent = server.count()
        server.heal()
        second = _run(project, *command)
        recovered = second.returncode == 0 and server.count() > sent
        OUTCOMES["recovered"].append((case, recovered))
        assert recovered, f"{case}: healed re-run exit {second.returncode}\n{second.stderr[-3000:]}"


def _cache_keys(project: Path) -> set[str]:
    path = project / ".cache" / "llm.sqlite"
    if not path.is_file():
        return set()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            return {key for (key,) in db.execute("SELECT key FROM completions")}
    except sqlite3.OperationalError:  # not created yet
        return set()


@pytest.fixture(scope="module")
def wide_teacher_template(teacher_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = clone_project(teacher_template, tmp_path_factory.mktemp("faults") / "wide")
    run_janus(project, "instructions")  # all 6 of the ci profile: 18 requests a run
    return project


@pytest.mark.parametrize("kill_at", [0.2, 0.5, 0.8])
def test_sigkill_then_rerun_pays_for_no_answered_request_twice(
    kill_at: float, wide_teacher_template: Path, tmp_path: Path
) -> None:
    project = clone_project(wide_teacher_template, tmp_path / "project")
    PROJECTS.append(project)
    with HealingServer(latency_s=0.15) as server:
        _overlay(project, "teacher", server.base_url)
        total = 18
        log = (tmp_path / "killed.log").open("w")
        process = subprocess.Popen(
            [str(BIN / "janus"), "preferences"], cwd=project, env=janus_env(**ENV), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 300
        try:
            while process.poll() is None and len(_cache_keys(project)) < kill_at * total:
                assert time.monotonic() < deadline, "no answers reached the cache"
                time.sleep(0.01)
            assert process.poll() is None, "the stage finished before it could be killed"
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            log.close()
        LOGS.append((tmp_path / "killed.log").read_text())
        committed = _cache_keys(project)
        sent_before = server.count()
        done = _run(project, "preferences")
        assert done.returncode == 0, done.stderr[-3000:]
        needed = len(_cache_keys(project)) - len(committed)
        # Every request the re-run sent must be one whose answer never reached the cache.
        repeated = (server.count() - sent_before) - needed
        COUNTS["repeated_after_kill"] += max(0, repeated)
        assert repeated == 0 and 0 < len(committed) < total


def test_two_runs_at_once_on_one_request_cache_send_each_request_once(
    wide_teacher_template: Path, tmp_path: Path
) -> None:
    project = clone_project(wide_teacher_template, tmp_path / "project")
    PROJECTS.append(project)
    with HealingServer(latency_s=0.2) as server:
        _overlay(project, "teacher", server.base_url)
        runs = [
            subprocess.Popen(
                [str(BIN / "janus"), "preferences"],
                cwd=project,
                env=janus_env(**ENV),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
        LOGS.extend(outputs)
        assert [run.returncode for run in runs] == [0, 0], outputs
        assert max(server.counts_by_body().values()) == 1
        assert server.count() == 18
        assert all(r.authorization == f"Bearer {SECRET}" for r in server.received)  # the key was used


def test_the_api_key_reaches_no_file_log_store_or_lock(tmp_path: Path) -> None:
    assert PROJECTS, "run with the fault tests above"
    leaks = []
    for project in PROJECTS:
        for path in project.rglob("*"):
            if path.is_file() and SECRET.encode() in path.read_bytes():
                leaks.append(str(path.relative_to(project.parent)))
    leaks += [f"log {i}" for i, log in enumerate(LOGS) if SECRET in log]
    COUNTS["secret_leaks"] = len(leaks)
    assert not leaks


LATIN1 = "caf\xe9".encode("latin-1")


def _append_line(path: Path, raw: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(raw)


def _non_utf8_instruction(project: Path) -> tuple[list[str], str]:
    pool = project / "data/instructions/pool.jsonl"
    lines = pool.read_bytes().count(b"\n")
    offset = pool.stat().st_size + len(b'{"instruction": "')
    _append_line(pool, b'{"instruction": "' + LATIN1 + b' au lait?", "source": "mine"}\n')
    return ["instructions"], f"data/instructions/pool.jsonl:{lines + 1}: not UTF-8 text (byte {offset + 3} is 0xe9)"


def _broken_json_instruction(project: Path) -> tuple[list[str], str]:
    pool = project / "data/instructions/pool.jsonl"
    lines = pool.read_bytes().count(b"\n")
    _append_line(pool, b'{"instruction": "never closed\n')
    return ["instructions"], f"data/instructions/pool.jsonl:{lines + 1}: broken JSON line"


def _truncated_parquet(project: Path) -> tuple[list[str], str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    whole = project / "whole.parquet"
    pq.write_table(pa.table({"system": ["s"] * 500, "prompt": ["p"] * 500, "output": ["o"] * 500}), whole)
    cut = project / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return ["validate-data", "--kind", "sft", "cut.parquet"], "cut.parquet: not a readable parquet file"


def _not_parquet(project: Path) -> tuple[list[str], str]:
    (project / "notes.parquet").write_text("these are notes, not a table\n")
    return ["validate-data", "--kind", "sft", "notes.parquet"], "notes.parquet: not a readable parquet file"


def _non_utf8_params(project: Path) -> tuple[list[str], str]:
    params = project / "params.yaml"
    offset = params.stat().st_size + len(b"# ")
    _append_line(params, b"# " + LATIN1 + b"\n")
    return ["check"], f"params.yaml: not UTF-8 text (byte {offset + 3} is 0xe9)"


def _non_utf8_taxonomy(project: Path) -> tuple[list[str], str]:
    _append_line(project / "data/taxonomy/preferences.yaml", b"# " + LATIN1 + b"\n")
    return ["check"], "data/taxonomy/preferences.yaml: not UTF-8 text"


def _non_utf8_rubric_examples(project: Path) -> tuple[list[str], str]:
    rubrics = project / "data/bench/rubric_examples.json"
    rubrics.write_bytes(rubrics.read_bytes().replace(b"score", b"sc" + LATIN1, 1))
    return ["check"], "data/bench/rubric_examples.json: not UTF-8 text"


def _non_utf8_bench_file(project: Path) -> tuple[list[str], str]:
    bench = project / "bench.jsonl"
    bench.write_bytes(b'{"id": "1", "prompt": "' + LATIN1 + b'"}\n')
    return ["validate-data", "--kind", "bench", "bench.jsonl"], "bench.jsonl:1: not UTF-8 text (byte 26 is 0xe9)"


BAD_INPUTS: dict[str, Callable[[Path], tuple[list[str], str]]] = {
    "instruction file with non-UTF-8 bytes": _non_utf8_instruction,
    "instruction file with a broken JSON line": _broken_json_instruction,
    "truncated parquet to validate-data": _truncated_parquet,
    "non-parquet file to validate-data": _not_parquet,
    "params.yaml with non-UTF-8 bytes": _non_utf8_params,
    "taxonomy with non-UTF-8 bytes": _non_utf8_taxonomy,
    "rubric examples with non-UTF-8 bytes": _non_utf8_rubric_examples,
    "bench file with non-UTF-8 bytes to validate-data": _non_utf8_bench_file,
}


@pytest.fixture(scope="module")
def input_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("bad-inputs") / "template")


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_one_line_naming_the_file_and_where(case: str, input_template: Path, tmp_path: Path) -> None:
    project = clone_project(input_template, tmp_path / "project")
    command, expected = BAD_INPUTS[case](project)
    done = run_janus(project, *command, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    clear = (
        done.returncode == 2
        and "Traceback" not in done.stderr
        and len(errors) == 1
        and expected in errors[0]
        and not (project / "artifacts").exists()  # nothing half-written to clean up
    )
    OUTCOMES["bad_inputs"].append((case, clear))
    assert clear, done.stderr[-3000:]
