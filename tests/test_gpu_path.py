"""Device placement and the GPU decoding path (transformers' `generate`, llm/hf_generate.py).

There is no GPU here. The device rule is checked with torch.cuda.is_available patched (only the
rule: which device `auto` picks); everything else runs for real on the CPU: the GPU path's
code is device-agnostic (its tensors follow the model), so the backend forced onto it decodes
the tiny model here exactly as it would on a GPU, grammar masks and all.
"""

from __future__ import annotations

import jsonschema
import pytest
import torch

from janus_align.config import Sampling, TransformersSettings
from janus_align.errors import JanusError
from janus_align.llm import ChatRequest
from janus_align.llm.cache import RequestCache
from janus_align.llm.decoding import sample_batch
from janus_align.llm.engine import LLMEngine
from janus_align.llm.hf_generate import generate_rows, neutral_generation_config
from janus_align.llm.transformers_backend import TransformersBackend, local_model_id
from janus_align.models.checkpoint import load_causal_lm, resolve_device, resolve_dtype

GREEDY = Sampling(max_new_tokens=8, temperature=0.0, top_p=1.0)
SAMPLED = Sampling(max_new_tokens=24, temperature=1.0, top_p=0.95)
SCHEMA = {
    "type": "object",
    "properties": {"feedback": {"type": "string", "maxLength": 16}, "score": {"type": "integer", "enum": [1, 2, 3]}},
    "required": ["feedback", "score"],
    "additionalProperties": False,
}
PROMPTS = ["Hi.", "Why is the sky blue?", "List two prime numbers, then explain why they are prime.", "Name a colour."]


def test_auto_is_cuda_only_when_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_device("auto") == resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cuda") == "bfloat16"  # bf16 on GPUs
    assert resolve_dtype("float32", "cuda") == "float32"  # an explicit dtype is kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(JanusError, match="device: cuda, but torch sees no GPU"):
        resolve_device("cuda")
    with pytest.raises(JanusError, match="device 'tpu'"):
        resolve_device("tpu")


def test_cpu_model_ids_are_unchanged_and_gpu_ids_name_device_dtype_and_decoder():
    """The request cache keys CPU answers as before (old caches stay valid); GPU answers apart."""
    assert local_model_id("base", "0123abcd", "float32", "cpu") == "base@0123abcd/float32/decoding-v2"
    assert local_model_id("base", "0123abcd", "float32", "cpu", "mistral_inst") == (
        "base@0123abcd/float32/decoding-v2/mistral_inst"
    )
    gpu = local_model_id("base", "0123abcd", "bfloat16", "cuda")
    assert gpu.startswith("base@0123abcd/bfloat16/cuda/generate-v1-transformers")
    assert gpu != local_model_id("base", "0123abcd", "float32", "cuda")


@pytest.fixture(scope="module")
def tiny_checkpoint(ci_base_project):
    return ci_base_project / "artifacts" / "models" / "base"


@pytest.fixture(scope="module")
def backends(tiny_checkpoint):
    """The CPU loop, and the same model forced onto the GPU path (`generate`)."""
    settings = TransformersSettings(batch_size=4, dtype="float32", device="cpu")
    loop = TransformersBackend(tiny_checkpoint, settings)
    gpu_path = TransformersBackend(tiny_checkpoint, settings)
    gpu_path.decoder = "generate"
    neutral_generation_config(gpu_path.model, gpu_path._eos_ids, gpu_path.tokenizer.pad_token_id)
    return loop, gpu_path


def complete(backend: TransformersBackend, requests: list[ChatRequest]):
    return LLMEngine(backend, RequestCache(":memory:")).complete(requests)


def test_a_device_of_cpu_keeps_the_model_and_the_loop_on_the_cpu(backends):
    loop, _ = backends
    assert loop.device == "cpu" and loop.decoder == "loop" and loop.model.device.type == "cpu"
    assert loop.model_id.endswith("/float32/decoding-v2")


def test_the_gpu_path_answers_greedy_requests_as_our_loop_does_in_request_order(backends):
    """Left-padded `generate` over mixed prompt lengths: the same greedy tokens as our loop."""
    loop, gpu_path = backends
    requests = [ChatRequest.of(p, sampling=GREEDY, seed=i) for i, p in enumerate(PROMPTS)]
    expected, got = complete(loop, requests), complete(gpu_path, requests)
    assert [r.text for r in got] == [r.text for r in expected] and any(r.text for r in got)
    assert [r.prompt_tokens for r in got] == [r.prompt_tokens for r in expected]
    assert [r.completion_tokens for r in got] == [r.completion_tokens for r in expected]


def test_the_gpu_path_groups_by_sampling_and_constrains_schema_and_regex_rows(backends):
    _, gpu_path = backends
    requests = [
        ChatRequest.of("Rate this answer.", sampling=SAMPLED, seed=1, response_schema=SCHEMA),
        ChatRequest.of("Hi.", sampling=GREEDY, seed=2),
        ChatRequest.of("One line, please.", sampling=SAMPLED, seed=3, response_regex=r"[^\n\r]+"),
        ChatRequest.of("Rate this other answer.", sampling=SAMPLED, seed=4, response_schema=SCHEMA),
        ChatRequest.of("Tell me a story.", sampling=SAMPLED, seed=5),
    ]
    results = complete(gpu_path, requests)
    for i in (0, 3):
        assert results[i].ok, results[i].error
        jsonschema.validate(results[i].parsed, SCHEMA)
    assert results[2].text and "\n" not in results[2].text
    assert 0 < results[4].completion_tokens <= SAMPLED.max_new_tokens + 1
    # A batch samples from one stream seeded by its rows' seeds: the same batch, the same answers.
    assert [r.text for r in complete(gpu_path, requests)] == [r.text for r in results]


def test_generate_rows_stops_each_row_at_its_first_stop_token_like_the_loop(tiny_checkpoint):
    model = load_causal_lm(tiny_checkpoint, "float32", "cpu")
    torch.manual_seed(0)
    prompts = [torch.randint(3, 200, (n,)).tolist() for n in (5, 12, 3)]
    greedy = Sampling(max_new_tokens=12, temperature=0.0, top_p=1.0)
    plain = sample_batch(model, prompts, 0, greedy, [], seeds=0)
    stop = plain[0].tokens[3]  # a token the first row emits mid-way
    ours = sample_batch(model, prompts, 0, greedy, [stop], seeds=0)
    theirs = generate_rows(model, prompts, 0, greedy, [stop], [0, 0, 0], [None] * 3)
    assert [(r.tokens, r.finished) for r in theirs] == [(r.tokens, r.finished) for r in ours]
    assert theirs[0].finished and len(theirs[0].tokens) < greedy.max_new_tokens


def test_the_grammar_mask_comes_before_temperature_and_top_p():
    """`generate` runs passed processors after its own: the nucleus must be cut after the mask."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from janus_align.llm.hf_generate import generation_config, sampling_processors

    hot = Sampling(max_new_tokens=4, temperature=0.7, top_p=0.9)
    config = generation_config(hot, [2], 0)
    assert config.do_sample and (config.temperature, config.top_p, config.top_k) == (1.0, 1.0, 0)
    kinds = [type(p) for p in sampling_processors(hot, [None], [2])]
    assert kinds == [TemperatureLogitsWarper, TopPLogitsWarper]
    assert not sampling_processors(GREEDY, [None], [2]) and not generation_config(GREEDY, [2], 0).do_sample
