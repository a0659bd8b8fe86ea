"""Fast checks of the synthesis building blocks (no model, no subprocess)."""

from __future__ import annotations

import os
import random
from types import SimpleNamespace

import pytest

from janus_align.config import load_params
from janus_align.config.load import parse_params
from janus_align.inputs import DIMENSIONS
from janus_align.seeding import derive_seed
from janus_align.synth import estimate as estimate_module
from janus_align.synth.preferences import _entries, _share, draw_subdimensions
from janus_align.synth.prompts import (
    TEMPLATE_VERSION,
    clean_system_message,
    generated_preference_schema,
    sampled_preference_prompt,
    sampled_preference_schema,
)
from janus_align.synth.rows import PreferenceEntry, ResponseRow, Usage
from janus_align.synth.splits import build_splits, held_out, pick_pair
from janus_align.synth.system_messages import check_system_message

TAXONOMY = {d: {f"{d}-a": ["x", "y"], f"{d}-b": ["z"], f"{d}-c": ["w"]} for d in DIMENSIONS}


def _bounded(schema: dict) -> list[str]:
    """Paths in a JSON schema where a string lacks maxLength or an array lacks maxItems."""
    problems = []

    def walk(node: dict, where: str) -> None:
        if node.get("type") == "string" and "maxLength" not in node:
            problems.append(where)
        if node.get("type") == "array":
            if "maxItems" not in node:
                problems.append(where)
            walk(node["items"], where + "[]")
        for name, child in node.get("properties", {}).items():
            walk(child, f"{where}.{name}")

    walk(schema, "$")
    return problems


def test_every_schema_string_and_array_is_bounded_so_constrained_output_terminates():
    assert _bounded(sampled_preference_schema(60, 160)) == []
    assert _bounded(generated_preference_schema(3, 60, 160)) == []
    assert generated_preference_schema(3, 60, 160)["properties"]["preference_sets"]["minItems"] == 3


def test_template_version_names_the_templates():
    assert TEMPLATE_VERSION.startswith("synth-v2-") and len(TEMPLATE_VERSION) == len("synth-v2-") + 8


def test_subdimension_draws_are_distinct_and_reproducible():
    first = draw_subdimensions(TAXONOMY, 3, random.Random("42:ins-1"))
    again = draw_subdimensions(TAXONOMY, 3, random.Random("42:ins-1"))
    assert first == again
    tuples = [tuple(sub for _, sub, _ in draw) for draw in first]
    assert len(set(tuples)) == 3
    assert all([dim for dim, _, _ in draw] == list(DIMENSIONS) for draw in first)


def test_sampled_prompts_share_the_most_before_the_instruction_then_the_instruction_per_set():
    """Most shared first (llm/decoding.py prefills shared prefixes once): the batch-wide head
    (task and answer format), then the instruction (a group prefix of its sets), the draws last."""
    draws = {
        text: draw_subdimensions(TAXONOMY, 3, random.Random(text)) for text in ("Explain tides.", "Write a haiku.")
    }
    prompts = {text: [sampled_preference_prompt(text, draw) for draw in sets] for text, sets in draws.items()}
    head = os.path.commonprefix([p for group in prompts.values() for p in group])
    assert head.endswith("Instruction:\n") and '"preference"' in head
    for text, group in prompts.items():
        assert os.path.commonprefix(group).startswith(head + text + "\n")
        for prompt, draw in zip(group, draws[text]):
            assert all(prompt.index(f"- {dim}, subdimension {sub} ") > prompt.index(text) for dim, sub, _ in draw)


def test_too_small_taxonomy_is_a_clear_error():
    tiny = {d: {"only": ["x"]} for d in DIMENSIONS}
    with pytest.raises(Exception, match="synth.sets_per_instruction"):
        draw_subdimensions(tiny, 2, random.Random(0))


def test_blank_preference_fields_are_unusable():
    answer = {d: {"preference": "p", "description": "d"} for d in DIMENSIONS}
    entries, reason = _entries(answer, ["s1", "s2", "s3", "s4"])
    assert reason is None and [e.dimension for e in entries] == list(DIMENSIONS)
    answer["informativeness"]["description"] = "   "
    assert _entries(answer, ["s1", "s2", "s3", "s4"]) == (None, "blank description in informativeness")


def test_usage_of_one_request_is_split_exactly_between_its_sets():
    usage = Usage(prompt_tokens=100, completion_tokens=301)
    parts = [_share(usage, 3, i) for i in range(3)]
    assert sum(p.prompt_tokens for p in parts) == 100 and sum(p.completion_tokens for p in parts) == 301


def test_request_seed_depends_only_on_what_identifies_the_request():
    assert derive_seed(42, "responses", "ins-1-0", 0) == derive_seed(42, "responses", "ins-1-0", 0)
    seeds = {derive_seed(42, "responses", "ins-1-0", a) for a in range(3)}
    assert len(seeds) == 3
    assert all(0 <= seed < 2**31 for seed in seeds)


def test_one_seed_derivation_serves_every_stage():
    import janus_align.seeding
    from janus_align.bench import bench
    from janus_align.evaluate import generate
    from janus_align.synth import preferences, responses, system_messages

    for module in (preferences, responses, system_messages, bench, generate):
        assert module.derive_seed is janus_align.seeding.derive_seed


def test_system_message_checks():
    prompt = "Explain how a lithium-ion battery stores and releases energy."
    assert check_system_message("You are a patient tutor.", prompt, 1, 100) is None
    assert "empty" in check_system_message("", prompt, 1, 100)
    assert "overlong" in check_system_message("x" * 101, prompt, 1, 100)
    assert "lists" in check_system_message("You are:\n- a\n- b\n- c", prompt, 1, 100)
    assert "restates" in check_system_message(f"You are a tutor. {prompt}", prompt, 1, 500)
    assert clean_system_message('System message: "You are calm."') == "You are calm."


def _response(instruction: str, index: int, output: str) -> ResponseRow:
    entries = [PreferenceEntry(dimension=d, subdimension="s", preference="p", description="d") for d in DIMENSIONS]
    return ResponseRow(
        id=f"{instruction}-{index}",
        instruction_id=instruction,
        set_index=index,
        prompt=f"Q {instruction}?",
        main_source="m",
        original_source="o",
        preference_set=entries,
        teacher="t",
        template_version="v",
        usage=Usage(),
        system=f"You are S{index}.",
        output=output,
    )


def test_pairs_are_seeded_and_rejected_differs_from_chosen():
    group = [_response("a", i, f"answer {i}") for i in range(3)]
    picks = {pick_pair(group, 42).chosen.set_index for _ in range(3)}
    assert len(picks) == 1  # the same pick every time for the same seed and instruction
    pair = pick_pair(group, 42)
    assert pair.rejected is not None and pair.rejected.output != pair.chosen.output
    # Identical outputs cannot make a pair.
    same = [_response("b", i, "same") for i in range(3)]
    assert pick_pair(same, 42).rejected is None


def test_splits_have_the_released_shapes():
    rows = [_response(name, i, f"{name} answer {i}") for name in "abcdefghij" for i in range(3)]
    assembled = build_splits(rows, seed=1, rm_test_fraction=0.1, sets_per_instruction=3)
    splits = assembled.splits
    assert assembled.incomplete == 0 and len(assembled.preference_sets("sft")) == 30
    assert len(splits["sft"]) == 30 and len(splits["sft_small"]) == 10
    assert len(splits["dpo"]) == len(splits["orpo"]) == 10
    assert len(splits["rm"]) == 9 and len(splits["rm_test"]) == 1
    dpo = splits["dpo"][0]
    assert [m["role"] for m in dpo["chosen"]] == ["system", "user", "assistant"]
    assert dpo["chosen"][0]["content"] == dpo["system"] and dpo["chosen"][1]["content"] == dpo["prompt"]
    assert dpo["rejected"][0]["content"] == dpo["system"]  # rejected answer, shown under the chosen system
    # RM input: the chosen system message, then the instruction.
    assert all(
        r["input"].startswith("You are S") and r["input"].endswith("?") and "\nQ " in r["input"] for r in splits["rm"]
    )
    assert held_out(1, 0.5, 0) == set() and len(held_out(10, 0.0, 0)) == 0 and len(held_out(4, 0.9, 0)) == 3


def test_paper_estimate_counts_requests_and_cost():
    from conftest import REPO
    from janus_align.config.profiles import profile_params

    params = parse_params(profile_params("paper", base=REPO / "params.yaml", profiles_dir=REPO / "profiles"), "paper")
    stages = estimate_module.estimate(params, "x" * 400)
    requests = {s.stage: s.requests for s in stages}
    assert requests == {"preferences": 65653, "system_messages": 196959, "responses": 196959}
    text = estimate_module.report(params, stages, 400)
    assert "459,571" in text and "gpt-4.1-2025-04-14" in text
    assert sum(s.cost() for s in stages) > 1000  # gpt-4.1 prices at 65k instructions
    # The cap beside the estimate, at sync and batch prices (the Batch API: half).
    # The paper teacher is on the Batch API, so the stages are billed at half the sync price.
    [cap] = [line for line in text.splitlines() if "teacher.max_cost_usd" in line]
    assert params.teacher.backend == "openai_batch"
    batch = sum(s.cost() for s in stages)
    assert f"${params.teacher.max_cost_usd:,.2f}" in cap and f"${batch * 2:,.2f} at sync prices" in cap
    assert f"${batch:,.2f} at batch prices" in cap


def test_estimate_cli_prints_before_any_call(tmp_path, monkeypatch, capsys):
    from conftest import REPO

    monkeypatch.chdir(REPO)
    stages = estimate_module.main(SimpleNamespace(params=str(REPO / "params.yaml"))).groups["synthesis"]
    assert [s.stage for s in stages] == ["preferences", "system_messages", "responses"]
    assert "total" in capsys.readouterr().out


def test_estimate_covers_every_api_stage_of_a_paper_project(tmp_path, monkeypatch, capsys):
    """Issue 19.9: the bench, the external candidates' answers and the judge with its repeats are
    paid too; the judge asks bench prompts x 4 rubrics x repeats x candidates, and the total is
    the sum of the stages."""
    from conftest import make_project

    project = make_project(tmp_path / "paper", profile="paper")
    monkeypatch.chdir(project)
    params = load_params(project / "params.yaml")
    pipeline = estimate_module.main(SimpleNamespace(params=str(project / "params.yaml")))
    out = capsys.readouterr().out
    assert list(pipeline.groups) == ["synthesis", "bench", "generate", "judge"]
    candidates = params.generate.candidates + params.generate.external
    judge = pipeline.groups["judge"]
    assert [s.stage for s in judge] == [f"judge {name}" for name in candidates]
    assert sum(s.requests for s in judge) == params.bench.num_prompts * 4 * params.judge.repeats * len(candidates)
    assert sum(s.requests for s in judge) == 75 * 4 * 3 * 3
    bench = {s.stage: s.requests for s in pipeline.groups["bench"]}
    assert bench == {"bench_preferences": 75, "bench_system_messages": 75, "bench_references": 75, "bench_rubrics": 300}
    assert [(s.stage, s.requests) for s in pipeline.groups["generate"]] == [("generate gpt-4.1-mini-2025-04-14", 75)]
    # Each stage at its own model's prices: the external candidate at gpt-4.1-mini's, the judge at the judge's.
    external = pipeline.groups["generate"][0]
    assert external.cost() == params.generate.external_llm.prices.cost_usd(
        external.prompt_tokens, external.completion_tokens
    )
    assert all(s.cost() > 0 for s in pipeline.stages())
    every = pipeline.stages()
    grand = estimate_module.total(every)
    assert grand.requests == sum(s.requests for s in every) and grand.cost() == sum(s.cost() for s in every)
    last = next(line for line in reversed(out.splitlines()) if line.startswith("total")).split()
    assert last == [
        "total",
        f"{grand.requests:,}",
        f"{grand.prompt_tokens:,}",
        f"{grand.completion_tokens:,}",
        f"{grand.cost():,.2f}",
    ]
    for name in ("bench total", "generate total", "judge total", "judge gpt-4.1-mini-2025-04-14", "bench_rubrics"):
        assert name in out


def test_only_complete_instructions_with_distinct_system_messages_enter_the_splits():
    complete = [_response("a", i, f"answer {i}") for i in range(3)]
    missing_a_set = [_response("b", i, f"answer {i}") for i in range(2)]
    same_system = [_response("c", i, f"answer {i}") for i in range(3)]
    same_system[2] = same_system[2].model_copy(update={"system": same_system[1].system + "  "})
    assembled = build_splits(
        complete + missing_a_set + same_system, seed=1, rm_test_fraction=0.0, sets_per_instruction=3
    )
    assert assembled.incomplete == 2
    assert len(assembled.splits["sft"]) == 3 and len(assembled.splits["sft_small"]) == 1
    assert {r["prompt"] for r in assembled.splits["sft"]} == {"Q a?"}


def test_system_messages_are_asked_as_one_line_and_still_checked_after():
    """The regex reaches every request; a backend that ignores it (openai) is caught by the check."""
    import re

    from conftest import REPO
    from janus_align.config import load_params
    from janus_align.llm import ChatResult
    from janus_align.llm.cache import RequestCache
    from janus_align.llm.engine import LLMEngine
    from janus_align.synth.rows import PreferenceSetRow
    from janus_align.synth.system_messages import PARAGRAPH_REGEX, generate_system_messages

    assert re.fullmatch(PARAGRAPH_REGEX, "You are a guide: you answer briefly; you cite (1) sources.")
    assert re.fullmatch(PARAGRAPH_REGEX, "x")
    # No line break anywhere, and no introduction whose message never comes.
    endings = (
        "",
        " ",
        "You are:\n- a",
        "a\rb",
        "a\n",
        "Here's the response:",
        "Here's the response: ",
        "You are calm.\t",
    )
    assert not any(re.fullmatch(PARAGRAPH_REGEX, t) for t in endings)

    class ListsFirst:
        """A backend that answers every first request with a list, whatever the regex."""

        model_id = "lists-first"

        def __init__(self):
            self.requests = []

        def generate(self, requests, on_result):
            for i, request in enumerate(requests):
                self.requests.append(request)
                listed = len(self.requests) <= 2
                on_result(i, ChatResult("You are:\n- calm\n- brief\n- kind" if listed else "You are a calm guide."))

        def close(self):
            pass

    entries = [PreferenceEntry(dimension=d, subdimension="s", preference="p", description="d") for d in DIMENSIONS]
    rows = [
        PreferenceSetRow(
            id=f"ins-{i}",
            instruction_id="ins",
            set_index=i,
            prompt="Q?",
            main_source="m",
            original_source="o",
            preference_set=entries,
            teacher="t",
            template_version="v",
            usage=Usage(),
        )
        for i in range(2)
    ]
    backend = ListsFirst()
    done, rejects, outcomes = generate_system_messages(
        LLMEngine(backend, RequestCache(":memory:")), rows, load_params(REPO / "params.yaml")
    )
    assert [r.response_regex for r in backend.requests] == [PARAGRAPH_REGEX] * 4
    assert [r.system for r in done] == ["You are a calm guide."] * 2 and not rejects
    assert [o.attempts for o in outcomes] == [2, 2]
