"""The `instructions` stage on the bundled pool: every filter removes its deliberate bait, and
nothing else; sampling is seeded; the paper profile says clearly when hub sources are missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import make_project, run_janus
from janus_align.config import load_params
from janus_align.synth import instructions
from janus_align.synth.filters import code_jaccard, dedup_key, gram_codes, jaccard, ngrams

# The bait rows of src/janus_align/default_data/instructions/pool.jsonl, by the filter that must
# remove them (for duplicates: the copy that comes second in the pool).
BAIT = {
    "exact_duplicate": {
        "Why is the sky blue during the day and red at sunset?",
        "How do I remove a red wine stain from a cotton shirt?",
        "Write a limerick about a cat who refuses to get off the keyboard.",
        "Explain the difference between 'is' and '==' in Python.",
    },
    "near_duplicate": {
        "What causes the seasons on planet Earth?",
        "How can I become a better listener?",
        "Solve for x: 3x + 7 = 22. Show each step.",
        "Give me tips for staying focused while working from home.",
    },
    "persona": {
        "You are a pirate captain. Describe your ship and the crew that sails it.",
        "Imagine you are a tour guide in Rome. Walk a group of visitors from the Colosseum to the Trevi "
        "Fountain and describe what they see along the way.",
        "Take the role of a strict editor and critique this opening line of a novel.\n\n"
        "It was a dark and stormy night, and the rain fell in torrents.",
        "Act as a senior Python developer and review my plan to store all configuration settings in global variables.",
        "You're a kindly family doctor. Explain to a nervous patient why they need a blood test.",
        "You are a seasoned financial advisor. Tell a recent graduate how to plan their first year of saving.",
    },
    "bench_overlap": {
        "What are some tips to improve my time management skills as a university student?",
        "How does a refrigerator keep food cold? Explain it as if I'm new to physics.",
    },
    # Not in the bundled pool: the test adds them to a second pool file.
    "empty": {""},
    "too_long": {"Summarize this. " + "word " * 1000},
}
NEAR_DUPLICATE_KEPT = {  # the first copy of each near-duplicate pair stays
    "What causes the seasons on Earth?",
    "How can I be a better listener?",
    "Solve for x: 3x + 7 = 22, showing each step.",
    "Give me some tips for staying focused while working from home!",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ci project whose data/ also holds an extra pool file with an empty and an over-long row."""
    root = make_project(tmp_path_factory.mktemp("instructions"))
    extra = [
        {"instruction": "  \n\t ", "input": "", "source": "bait"},
        {"instruction": next(iter(BAIT["too_long"])).strip(), "input": "", "source": "bait"},
        {"instruction": "What   is a\u00a0prime number?  ", "input": "", "source": "extra-source"},
    ]
    (root / "data" / "instructions" / "extra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in extra))
    return root


@pytest.fixture(scope="module")
def stage_output(project: Path, monkeypatch_module) -> dict:
    monkeypatch_module.chdir(project)
    params = load_params(project / "params.yaml")
    rows = instructions.run(params)
    removed = [json.loads(line) for line in (project / "artifacts/synth/instructions_removed.jsonl").open()]
    metrics = json.loads((project / "metrics/instructions.json").read_text())
    return {"rows": rows, "removed": removed, "metrics": metrics, "params": params}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_each_filter_removes_exactly_its_bait(stage_output):
    removed = stage_output["removed"]
    by_filter = {
        name: {dedup_key(r["prompt"]) for r in removed if r["filter"] == name} for name in instructions.FILTERS
    }
    for name, texts in BAIT.items():
        assert by_filter[name] == {dedup_key(t) for t in texts}, name
    counts = stage_output["metrics"]["removed"]
    assert counts == {
        "empty": 1,
        "too_long": 1,
        "exact_duplicate": 4,
        "near_duplicate": 4,
        "persona": 6,
        "bench_overlap": 2,
    }


def test_first_copy_of_a_near_duplicate_is_kept_and_reasons_name_the_match(stage_output, project):
    # Sample everything to see what was kept.
    params = stage_output["params"].model_copy(
        update={"synth": stage_output["params"].synth.model_copy(update={"num_instructions": 10_000})}
    )
    candidates = list(instructions.pool_candidates(project / "data" / "instructions"))
    kept, removed = instructions.filter_candidates(candidates, params, [])
    kept_prompts = {c.prompt for c in kept}
    assert NEAR_DUPLICATE_KEPT <= kept_prompts
    assert all("Jaccard" in r["reason"] for r in removed if r["filter"] == "near_duplicate")


def test_rows_have_ids_sources_and_normalized_text(stage_output):
    rows = stage_output["rows"]
    metrics = stage_output["metrics"]
    assert len(rows) == stage_output["params"].synth.num_instructions == metrics["sampled"]
    assert metrics["kept"] == metrics["read"] - metrics["removed_total"]
    assert len({r.id for r in rows}) == len(rows)
    for row in rows:
        assert row.id.startswith("ins-") and row.prompt == row.prompt.strip()
        assert row.main_source in {"janus-default-pool", "extra"}
        assert row.original_source


def test_whitespace_is_normalized_and_inputs_are_joined(stage_output, project):
    candidates = list(instructions.pool_candidates(project / "data" / "instructions"))
    kept, _ = instructions.filter_candidates(candidates, stage_output["params"], [])
    prompts = {c.prompt for c in kept}
    assert "What is a prime number?" in prompts
    with_input = next(c for c in kept if c.input.startswith("def average"))
    assert with_input.prompt == with_input.instruction + "\n\n" + with_input.input
    assert "    total = 0" in with_input.prompt  # code indentation survives normalization


def test_sampling_is_seeded(stage_output):
    kept = [instructions.Candidate(f"instruction {i}", "", "m", "o") for i in range(50)]
    assert instructions.sample(kept, 5, 1) == instructions.sample(kept, 5, 1)
    assert instructions.sample(kept, 5, 1) != instructions.sample(kept, 5, 2)
    assert len(instructions.sample(kept, 80, 1)) == 50


def test_paper_profile_offline_says_the_hub_sources_are_missing(project, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["synth"]["include_hub_sources"] = True
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    done = run_janus(project, "--params", str(path), "instructions", check=False, OMP_NUM_THREADS="1")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "hub sources are missing" in done.stderr and "berkeley-nest/Nectar" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_index_keeps_gram_codes_whose_jaccard_is_that_of_the_gram_strings():
    texts = [
        "What causes the seasons on Earth?",
        "What causes the seasons on planet Earth?",
        "Wie erklärt man Straßenbahnen? 🚋 Kurz, bitte.",
        "Wie erklärt man Straßenbahnen? 🚋 Ausführlich, bitte.",
        "日本語の文章を要約してください。",
        "日本語の長い文章を要約してください。",
        "Hi",
        "hi!",
        "",
        "   ",
    ]
    for a in texts:
        assert len(gram_codes(a, 4)) == len(ngrams(a, 4))
        for b in texts:
            assert code_jaccard(gram_codes(a, 4), gram_codes(b, 4)) == pytest.approx(
                jaccard(ngrams(a, 4), ngrams(b, 4))
            ), (a, b)
