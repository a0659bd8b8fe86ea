"""Generation: the system message reaches the model in every prompt format, best-of-N with a reward
model, and generate + judge + report through the CLI on the tiny ci model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench_samples import official_rows, set_params, write_jsonl
from conftest import run_janus
from janus_align.bench.schema import bench_item
from janus_align.config import Params, TransformersSettings, load_params
from janus_align.errors import JanusError
from janus_align.evaluate.generate import generation_requests, require_reward_model, resolve_prompt_format
from janus_align.models.checkpoint import load_tokenizer
from janus_align.models.prompt_format import (
    encode_prompt,
    system_reaches_model,
    system_tokens,
    template_supports_system,
)
from janus_align.train.datasets import literal_prompt

SYSTEM = "You are a retired sea captain who explains everything through stories of storms and harbours."

# A Gemma-like template: no system role at all, it raises when given one.
NO_SYSTEM_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def checkpoints(ci_base_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny base checkpoint, and a copy whose chat template rejects system messages."""
    base = ci_base_project / "artifacts" / "models" / "base"
    no_system = tmp_path_factory.mktemp("no-system") / "model"
    shutil.copytree(base, no_system)
    tokenizer = load_tokenizer(no_system)
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    tokenizer.save_pretrained(no_system)
    return {"base": base, "no_system": no_system}


@pytest.mark.parametrize(
    ("checkpoint", "prompt_format"),
    [("base", "chat_template"), ("base", "mistral_inst"), ("no_system", "chat_template")],
)
def test_the_system_message_reaches_the_model_token_by_token(checkpoints, checkpoint, prompt_format):
    """Render a generate-stage request exactly as the backend does, encode it, and find the system
    message's tokens in what the model reads (a silently dropped system turn fails here)."""
    from janus_align.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(checkpoints[checkpoint], TransformersSettings(dtype="float32"), prompt_format)
    if checkpoint == "no_system":
        assert not template_supports_system(backend.tokenizer)
    item = bench_item({**official_rows(1)[0], "system": SYSTEM}, "row")
    params = Params.model_validate({"generate": {"prompt_format": prompt_format}})
    [request] = generation_requests([item], params, samples=1)
    assert request.messages[0] == {"role": "system", "content": SYSTEM}
    text = backend.render(request)
    ids = encode_prompt(backend.tokenizer, text, prompt_format)
    span = system_tokens(backend.tokenizer, text, SYSTEM, prompt_format)
    assert span, f"system message missing from the {prompt_format} prompt"
    start = next(i for i in range(len(ids)) if ids[i : i + len(span)] == span)  # contiguous in the input
    assert backend.tokenizer.decode(ids[start : start + len(span)]).strip() == SYSTEM
    assert item.prompt in backend.tokenizer.decode(ids)
    assert system_reaches_model(backend.tokenizer, SYSTEM, prompt_format)
    if prompt_format == "mistral_inst":
        # The paper's literal format, its space after [/INST] moved into the answer as training does
        # (train.datasets.literal_prompt), so the model reads the very tokens it was trained on.
        assert text == f"[INST] {SYSTEM}\n{item.prompt} [/INST]"
        assert text == literal_prompt(SYSTEM, item.prompt, "answer")[0]
        assert ids.count(backend.tokenizer.bos_token_id) <= 1  # BOS (when the tokenizer adds one) never doubled
    if checkpoint == "no_system":
        assert text.count("<|im_start|>user\n" + SYSTEM + "\n" + item.prompt) == 1  # folded into the user turn


def test_auto_prompt_format_follows_the_model_setting():
    assert resolve_prompt_format(Params.model_validate({"model": {"prompt_format": "mistral_inst"}})) == "mistral_inst"
    explicit = {"model": {"prompt_format": "mistral_inst"}, "generate": {"prompt_format": "chat_template"}}
    assert resolve_prompt_format(Params.model_validate(explicit)) == "chat_template"


def test_requests_are_seeded_per_item_and_sample_independently_of_order():
    items = [bench_item(row, "row", i) for i, row in enumerate(official_rows(3))]
    params = Params()
    forward = generation_requests(items, params, samples=2)
    backward = generation_requests(items[::-1], params, samples=2)
    assert len({r.seed for r in forward}) == 6
    assert {(json.dumps(r.messages), r.seed) for r in forward} == {(json.dumps(r.messages), r.seed) for r in backward}


def test_best_of_without_a_reward_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert require_reward_model(1) is None
    with pytest.raises(JanusError, match=r"no reward model at artifacts/models/rm: run `janus train_rm` first"):
        require_reward_model(4)


def _prepare_bench(project: Path, count: int = 3) -> list[dict]:
    rows = official_rows(count)
    write_jsonl(project / "artifacts" / "bench" / "bench.jsonl", rows)
    set_params(project, "generate", candidates=["base"])
    return rows


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_generate_judge_report_on_the_tiny_model_through_the_cli(ci_project):
    bench = _prepare_bench(ci_project, count=3)
    done = run_janus(ci_project, "generate", "--model", "base", timeout=600)
    assert "generate base: 3 responses" in done.stdout
    responses = _rows(ci_project / "artifacts/eval/responses/base.jsonl")
    assert [r["id"] for r in responses] == [row["id"] for row in bench]
    assert all(r["model"] == "base" and r["error"] is None and isinstance(r["response"], str) for r in responses)
    assert all(r["prompt_format"] == "chat_template" and r["completion_tokens"] > 0 for r in responses)

    done = run_janus(ci_project, "judge", timeout=600)  # every candidate: here only base
    assert "unscored" in done.stdout and "verdicts (" in done.stdout  # the unscored rate is printed
    judgments = _rows(ci_project / "artifacts/eval/judgments/base.jsonl")
    assert len(judgments) == 3 * 4  # items x rubrics x 1 repeat
    assert all(j["verdict"] in (1, 2, 3, 4, 5, None) and j["prompt_hash"] and j["judge_model"] for j in judgments)
    official = json.loads((ci_project / "artifacts/eval/official/base_evaluation.json").read_text())
    assert set(official) == {row["id"] for row in bench} and all(len(v["score"]) == 4 for v in official.values())
    metrics = json.loads((ci_project / "metrics/eval/base.json").read_text())
    assert metrics["judgments"] == 12 and metrics["unscored"] + sum(j["verdict"] is not None for j in judgments) == 12

    done = run_janus(ci_project, "report", timeout=600)
    board = json.loads((ci_project / "metrics/leaderboard.json").read_text())
    assert "overall" in board["models"]["base"] and (ci_project / "reports/eval/report.html").is_file()

    set_params(ci_project, "generate", best_of=2)
    failed = run_janus(ci_project, "generate", "--model", "base", check=False, timeout=300)
    assert failed.returncode == 2 and "no reward model at artifacts/models/rm" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.slow
def test_best_of_n_keeps_the_sample_the_reward_model_scores_highest(ci_project):
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    from janus_align.evaluate.generate import reward_scores, reward_text

    _prepare_bench(ci_project, count=2)
    base = ci_project / "artifacts/models/base"
    rm_dir = ci_project / "artifacts/models/rm"
    tokenizer = load_tokenizer(base)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(rm_dir)
    tokenizer.save_pretrained(rm_dir)
    set_params(ci_project, "generate", best_of=3)
    run_janus(ci_project, "generate", "--model", "base", timeout=600)
    rows = _rows(ci_project / "artifacts/eval/responses/base.jsonl")
    bench = {row["id"]: row for row in official_rows(2)}
    params = load_params(ci_project / "params.yaml")
    for row in rows:
        assert row["best_of"] == 3 and len(row["rewards"]) == 3 and len(set(row["rewards"])) == 3
        assert row["reward"] == max(row["rewards"])
        # The kept response, scored again here, gives the reward that made it win.
        item = bench[row["id"]]
        text = reward_text(load_tokenizer(rm_dir), item["system"], item["prompt"], row["response"], "chat_template")
        [again] = reward_scores(rm_dir, [text], "chat_template", max_length=params.train.common.max_length)
        assert again == pytest.approx(row["reward"], abs=1e-4)
