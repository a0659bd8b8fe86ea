"""The bench stage: even sampling over the source groups, rubric prompts, and a whole `janus bench`
run with an OpenAI-compatible teacher on 127.0.0.1 (fast and deterministic), including the check
that no bench system message appears in the training collection."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench_samples import DEFAULT_DATA, official_rows
from conftest import REPO, make_project, run_janus
from janus_align.bench import bench as bench_module
from janus_align.bench.bench import build_bench, collection_system_messages, sample_prompts, unseen
from janus_align.bench.rubrics import RUBRIC_SYSTEM, load_examples, parse_rubric, rubric_prompt, rubric_schema
from janus_align.bench.schema import OFFICIAL_KEYS, bench_item, load_bench
from janus_align.config import OpenAISettings, load_params
from janus_align.errors import JanusError
from janus_align.inputs import BENCH_GROUPS
from janus_align.llm import open_engine
from janus_align.llm.types import ChatRequest
from janus_align.synth import teacher
from janus_align.synth.prompts import PREFERENCE_SYSTEM, SYSTEM_MESSAGE_SYSTEM
from janus_align.synth.rows import PreferenceEntry
from loopback_server import LoopbackServer, default_answer, requested_schema

PROMPTS = [json.loads(line) for line in (DEFAULT_DATA / "bench" / "prompts.jsonl").read_text().splitlines() if line]


@pytest.mark.parametrize("count", [5, 7, 10, 75])
def test_prompts_are_sampled_evenly_across_the_five_groups(count):
    picked = sample_prompts(PROMPTS, count, seed=42)
    per_group = Counter(row.original_source for row in picked)
    assert sum(per_group.values()) == count and set(per_group) == set(BENCH_GROUPS)
    assert max(per_group.values()) - min(per_group.values()) <= 1
    assert len({row.id for row in picked}) == count
    assert sample_prompts(PROMPTS, count, seed=42) == picked  # seeded


def test_sampling_depends_on_the_seed_and_ids_name_group_and_line():
    first, other = sample_prompts(PROMPTS, 10, seed=1), sample_prompts(PROMPTS, 10, seed=2)
    assert [r.id for r in first] != [r.id for r in other]
    row = first[0]
    line = int(row.id.rsplit("-", 1)[1])
    assert PROMPTS[line - 1]["prompt"] == row.prompt and row.id.startswith("alpacaeval-")


def test_a_small_group_gives_its_share_to_the_others_and_too_many_prompts_is_an_error():
    rows = [{"source": "Koala", "prompt": "only one"}] + [r for r in PROMPTS if r["source"] != "Koala"]
    picked = sample_prompts(rows, 13, seed=0)
    assert Counter(r.original_source for r in picked)["Koala"] == 1 and len(picked) == 13
    with pytest.raises(JanusError, match="bench.num_prompts is 99"):
        sample_prompts(PROMPTS, 99, seed=0)


def test_rubric_prompt_shows_three_examples_and_one_preference_and_the_schema_is_bounded():
    examples = load_examples(DEFAULT_DATA / "bench" / "rubric_examples.json")
    preference = PreferenceEntry(dimension="style", subdimension="tone", preference="warm", description="Warm words.")
    prompt = rubric_prompt(examples, preference)
    assert prompt.startswith("# Example rubrics\n") and prompt.endswith("# Generated rubric:")
    assert all(example.criteria in prompt for example in examples)
    assert "Preference: warm" in prompt and "Dimension: style" in prompt
    schema = rubric_schema(50, 30)
    strings = [schema["properties"]["criteria"], *schema["properties"]["score_descriptions"]["properties"].values()]
    assert [s["maxLength"] for s in strings] == [50, 30, 30, 30, 30, 30]
    assert parse_rubric({"criteria": "x", "score_descriptions": {k: "..." for k in "12345"}})[1].startswith("blank")


def test_items_whose_system_message_is_in_the_collection_are_dropped_and_counted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    items = [bench_item(row, "row", i) for i, row in enumerate(official_rows(3))]
    assert collection_system_messages() is None  # no collection yet: nothing to check against
    assert unseen(items, None) == (items, 0)
    split = tmp_path / "artifacts" / "collection" / "sft"
    split.mkdir(parents=True)
    variant = "  ".join(items[1].system.upper().split(" "))  # same message, other case and spacing
    pq.write_table(pa.table({"system": [variant, "unrelated"]}), split / "part-0.parquet")
    kept, overlapping = unseen(items, collection_system_messages())
    assert [i.id for i in kept] == [items[0].id, items[2].id] and overlapping == 1


# ------------------------------------------------------------------------------------------
# The whole stage with a loopback teacher


def _instruction_of(user: str) -> str:
    """Which bench prompt a system-message request is about (whatever the template's wording)."""
    return max((row["prompt"] for row in PROMPTS if row["prompt"] in user), key=len)


def persona_for(instruction: str) -> str:
    """The loopback teacher's system message for an instruction (the test predicts it)."""
    return (
        f"You are a patient guide, persona {hashlib.sha256(instruction.encode()).hexdigest()[:12]}, who tells stories."
    )


def teacher_answer(body: dict) -> str:
    messages = body["messages"]
    if body.get("response_format"):
        return default_answer(body)  # preference sets and rubrics: a valid JSON example
    if messages[0]["content"] == SYSTEM_MESSAGE_SYSTEM:
        return persona_for(_instruction_of(messages[-1]["content"]))
    return f"A reference answer to: {messages[-1]['content'][:40]}"


@pytest.mark.slow
def test_bench_stage_builds_the_official_schema_and_keeps_system_messages_unseen(tmp_path):
    project = make_project(tmp_path / "project")
    sampled = sample_prompts(PROMPTS, 5, seed=42)
    planted = sampled[2]
    split = project / "artifacts" / "collection" / "sft"
    split.mkdir(parents=True)
    systems = [persona_for(planted.prompt), "You are someone else entirely."]
    pq.write_table(
        pa.table({"system": systems, "prompt": ["p1", "p2"], "output": ["o1", "o2"]}), split / "train.parquet"
    )
    with LoopbackServer(answer=teacher_answer) as server:
        overlay = (
            f"teacher:\n  backend: openai\n  model: teacher\n  base_url: {server.base_url}\n"
            "  api_key_env: JANUS_TEST_TEACHER_KEY\n  max_retries: 0\nbench:\n  num_prompts: 5\n"
        )
        (project / "profiles" / "loopback.yaml").write_text(overlay)
        run_janus(project, "use-profile", "loopback")
        done = run_janus(project, "bench", timeout=300)
        # 5 preference sets + 5 system messages + 5 references + 20 rubrics, nothing re-asked.
        assert server.count() == 35
    assert "1 system message(s) found in the training collection and dropped" in done.stdout
    items = load_bench(project / "artifacts" / "bench" / "bench.jsonl")
    assert [item.id for item in items] == [row.id for row in sampled if row is not planted]
    for line in (project / "artifacts" / "bench" / "bench.jsonl").read_text().splitlines():
        assert list(json.loads(line)) == ["id", *OFFICIAL_KEYS]
    for item, row in zip(items, [r for r in sampled if r is not planted]):
        assert item.prompt == row.prompt and item.source == row.original_source
        assert item.system == persona_for(row.prompt)
        assert [p.dimension for p in item.preference_set] == [
            "style",
            "background_knowledge",
            "informativeness",
            "harmlessness",
        ]
        assert len(item.rubrics) == 4 and item.reference_answer.startswith("A reference answer to:")
    metrics = json.loads((project / "metrics" / "bench.json").read_text())
    assert metrics["system_in_collection"] == 1 and metrics["collection_checked"] is True
    assert metrics["items"] == 4 and metrics["prompts_sampled"] == 5 and metrics["dropped"] == 1
    assert sum(metrics["rejected"].values()) == 0


# ------------------------------------------------------------------------------------------
# References and rubrics asked together, in process


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _fill(schema: dict, tag: str):
    """A JSON value valid for the (object-of-strings) schema, every string derived from `tag`."""
    if schema.get("type") == "object":
        return {name: _fill(schema["properties"][name], f"{tag}{name}") for name in schema["required"]}
    return hashlib.sha256(tag.encode()).hexdigest()[: schema.get("maxLength", 12)]


def request_bound_answer(body: dict) -> str:
    """Answers that depend on the whole request (seed included), and some unusable ones, so a
    changed request changes the bench and re-asks happen."""
    digest = _digest(body)
    system = body["messages"][0]["content"]
    schema = requested_schema(body)
    if system == RUBRIC_SYSTEM:
        answer = _fill(schema, digest)
        if int(digest, 16) % 3 == 0:
            answer["criteria"] = "..."  # blank: asked again with a new seed
        return json.dumps(answer)
    if schema is not None:
        return json.dumps(_fill(schema, digest))
    if system == SYSTEM_MESSAGE_SYSTEM:
        return persona_for(_instruction_of(body["messages"][-1]["content"]))
    return "" if int(digest, 16) % 4 == 0 else f"Reference {digest[:16]}."  # "" is asked again


class RecordingEngine:
    """The real engine, with every `complete` call's requests recorded."""

    def __init__(self, engine):
        self.engine = engine
        self.calls: list[list[ChatRequest]] = []

    def complete(self, requests, desc="requests"):
        self.calls.append(list(requests))
        return self.engine.complete(requests, desc=desc)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def _kind(request: ChatRequest) -> str:
    system = request.messages[0]["content"]
    return {PREFERENCE_SYSTEM: "preference", SYSTEM_MESSAGE_SYSTEM: "system", RUBRIC_SYSTEM: "rubric"}.get(
        system, "reference"
    )


def test_references_and_rubrics_go_to_the_engine_together_and_make_the_same_bench(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(DEFAULT_DATA)
    prompts = sample_prompts(PROMPTS, 5, seed=42)
    params = load_params(REPO / "params.yaml")

    def bench_with(server, cache: str):
        config = OpenAISettings(
            model="teacher",
            base_url=server.base_url,
            api_key_env="JANUS_TEST_TEACHER_KEY",
            max_retries=0,
            sampling=params.teacher.sampling,
        )
        engine = RecordingEngine(open_engine(config, cache_path=tmp_path / cache))
        try:
            items, counts = build_bench(engine, prompts, params)
        finally:
            engine.close()
        return items, counts, [[_kind(r) for r in call] for call in engine.calls]

    with LoopbackServer(answer=request_bound_answer) as server:
        together = bench_with(server, "together.sqlite")
        # The sequential code: each job asked on its own, references first.
        monkeypatch.setattr(
            bench_module,
            "ask_jobs",
            lambda engine, jobs, max_reasks: [teacher.ask_jobs(engine, [job], max_reasks)[0] for job in jobs],
        )
        apart = bench_with(server, "apart.sqlite")
        # Each run paid for every request once (own cache): both sent exactly the same requests.
        assert set(server.counts_by_body().values()) == {2}

    items, counts, calls = together
    assert items == apart[0] and counts == apart[1]
    assert items and counts["reasked"] > 0  # the re-ask path was exercised
    assert counts["rejected"]["preference_sets"] == counts["rejected"]["system_messages"] == 0
    # Together: the first attempts of all 5 references and 20 rubrics in one call, and each
    # later attempt's re-asks of both in one call too.
    joint = [Counter(call) for call in calls if {"reference", "rubric"} & set(call)]
    assert joint[0] == {"reference": 5, "rubric": 20} and set(joint[1]) == {"reference", "rubric"}
    separate = [Counter(call) for call in apart[2] if {"reference", "rubric"} & set(call)]
    assert all(len(call) == 1 for call in separate)  # apart, no call mixes them
    reference_calls = sum(1 for call in separate if "reference" in call)
    rubric_calls = sum(1 for call in separate if "rubric" in call)
    assert len(joint) == max(reference_calls, rubric_calls) < reference_calls + rubric_calls
    assert sum(joint, Counter()) == sum(separate, Counter())
