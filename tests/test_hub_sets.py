"""Evaluation sets named by dataset id (`hf:ID[@CONFIG][:SPLIT]`, evaluate/hub_sets.py), without a network.

`datasets.load_dataset` reads a local directory laid out like a dataset's repository exactly as it
reads the hub's, so each test puts the bundled sample (the official layout) in a temporary
directory, names it `hf:DIR`, and checks that the file written into the stage's artifacts reads,
with the format's one reader, as the sample does. The offline error uses a real hub id under
HF_HUB_OFFLINE=1 (conftest sets it for every test).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO, make_project, run_janus
from janus_align import paths
from janus_align.config.schema import MTBenchConfig, RealToxicityConfig
from janus_align.errors import JanusError
from janus_align.evaluate import hub_sets
from janus_align.evaluate.eval_formats import load_mt_bench, load_realtoxicity
from janus_align.evaluate.mt_bench import questions_file
from janus_align.evaluate.pairwise_sets import load_alpaca_eval, load_arena_hard_questions
from janus_align.evaluate.realtoxicity import prompts_file

SAMPLES = REPO / "src" / "janus_align" / "default_data"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.chdir(tmp_path)  # the stage's artifacts (relative paths) land in the test's folder
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _repo(tmp_path: Path, sample: Path) -> Path:
    """A dataset repository holding the official file, as the hub would serve it."""
    repo = tmp_path / "repo" / sample.parent.name
    repo.mkdir(parents=True)
    shutil.copy(sample, repo / sample.name)
    return repo


def test_parse_id_config_split() -> None:
    assert hub_sets.parse("hf:allenai/real-toxicity-prompts", "s") == hub_sets.HubSet("allenai/real-toxicity-prompts")
    assert hub_sets.parse("hf:a/b@cfg:eval", "s") == hub_sets.HubSet("a/b", "cfg", "eval")
    assert hub_sets.parse("hf:a/b:test", "s") == hub_sets.HubSet("a/b", None, "test")
    assert hub_sets.parse("hf:o/n/f.json", "s") == hub_sets.HubSet("o/n/f.json")
    with pytest.raises(JanusError, match=r"^evals\.x: 'hf:' is not hf:ID"):
        hub_sets.parse("hf:", "evals.x")


def test_alpaca_eval_by_id_is_written_once_as_the_official_json(tmp_path: Path) -> None:
    sample = SAMPLES / "alpaca_eval" / "alpaca_eval.json"
    repo = _repo(tmp_path, sample)
    value = f"hf:{repo}"
    found = hub_sets.resolve(value, paths.ALPACA_EVAL_SET, paths.ALPACA_EVAL_DIR, "alpaca_eval.json", "setting")
    assert found.name == "alpaca_eval.json" and found.is_relative_to(Path("artifacts"))
    assert load_alpaca_eval(found) == load_alpaca_eval(sample)
    shutil.rmtree(repo)  # the cached file is read again; the source is not asked twice
    again = hub_sets.resolve(value, paths.ALPACA_EVAL_SET, paths.ALPACA_EVAL_DIR, "alpaca_eval.json", "setting")
    assert again == found and load_alpaca_eval(again) == load_alpaca_eval(sample)


def test_unset_and_plain_paths_are_unchanged() -> None:
    assert hub_sets.resolve(None, paths.ALPACA_EVAL_SET, paths.ALPACA_EVAL_DIR, "alpaca_eval.json", "s") == (
        paths.ALPACA_EVAL_SET
    )
    assert hub_sets.resolve("mine.json", paths.ALPACA_EVAL_SET, paths.ALPACA_EVAL_DIR, "alpaca_eval.json", "s") == (
        Path("mine.json")
    )


def test_mt_bench_questions_by_id(tmp_path: Path) -> None:
    sample = SAMPLES / "mt_bench" / "question.jsonl"
    found = questions_file(MTBenchConfig(questions=f"hf:{_repo(tmp_path, sample)}"))
    assert found.is_relative_to(paths.MT_BENCH_DIR) and found.name == "question.jsonl"
    assert load_mt_bench(found) == load_mt_bench(sample)  # questions without `reference` stay without one


def test_realtoxicity_prompts_by_id(tmp_path: Path) -> None:
    sample = SAMPLES / "realtoxicity" / "prompts.jsonl"
    found = prompts_file(RealToxicityConfig(prompts=f"hf:{_repo(tmp_path, sample)}:train"))
    assert found.is_relative_to(paths.REALTOXICITY_DIR)
    got, want = load_realtoxicity(found), load_realtoxicity(sample)
    assert [(p.text, p.challenging) for p in got] == [(p.text, p.challenging) for p in want]


def test_arena_hard_questions_from_one_data_file(tmp_path: Path) -> None:
    sample = SAMPLES / "arena_hard" / "question.jsonl"
    data_file = _repo(tmp_path, sample) / "question.jsonl"  # the hf:OWNER/NAME/FILE form, a local file here
    found = hub_sets.resolve(
        f"hf:{data_file}",
        paths.ARENA_HARD_QUESTIONS,
        paths.ARENA_HARD_DIR,
        "question.jsonl",
        "evals.arena_hard.questions",
    )
    assert load_arena_hard_questions(found) == load_arena_hard_questions(sample)


def test_a_wrong_split_is_one_line_naming_the_param(tmp_path: Path) -> None:
    repo = _repo(tmp_path, SAMPLES / "mt_bench" / "question.jsonl")
    with pytest.raises(JanusError) as caught:
        questions_file(MTBenchConfig(questions=f"hf:{repo}:nope"))
    message = str(caught.value)
    assert message.startswith("evals.mt_bench.questions: hf:") and "nope" in message and "\n" not in message


@pytest.mark.parametrize(
    ("value", "official"),
    [("hf:allenai/real-toxicity-prompts", "prompts.jsonl"), ("hf:tatsu-lab/alpaca_eval/alpaca_eval.json", "x.json")],
)
def test_offline_hub_is_one_line_saying_to_download_the_files(
    value: str, official: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JanusError) as caught:
        hub_sets.resolve(value, Path("unused"), Path("artifacts/eval/x"), official, "evals.realtoxicity.prompts")
    message = str(caught.value)
    assert message.startswith(f"evals.realtoxicity.prompts: {value}: the Hugging Face hub is unreachable")
    assert f"download the official {official} and set evals.realtoxicity.prompts to its path" in message
    assert "\n" not in message
    assert not Path("artifacts/eval/x/hub").exists()  # nothing half-written to be mistaken for the set


def test_the_stage_stops_in_one_line_when_the_hub_is_unreachable(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", profile=None)
    (project / "profiles" / "hub.yaml").write_text(
        "evals:\n  mt_bench:\n    enabled: true\n    questions: hf:lighteval/mt-bench\n"
    )
    run_janus(project, "use-profile", "hub")
    done = run_janus(project, "mt_bench", "--model", "base", check=False, HF_HUB_OFFLINE="1")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "evals.mt_bench.questions: hf:lighteval/mt-bench: the Hugging Face hub is unreachable" in last
    assert "download the official question.jsonl and set evals.mt_bench.questions to its path" in last
    assert "Traceback" not in done.stderr
