"""Golden tests: what the trainers actually train on, for one example per prompt format.

The system message must reach the model in training exactly as inference sends it, the loss
must cover the answer only, and BOS/EOS must be neither missing nor doubled. Each case builds
the real trainer (our build_trainer, TRL's tokenization) on the tiny ci model and compares the
tokens and loss mask with tests/golden/train_tokens.json (regenerate it, after checking the
structural assertions, with JANUS_UPDATE_GOLDEN=1).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from janus_align.config.load import parse_params
from janus_align.config.profiles import profile_params
from janus_align.models.prompt_format import encode_prompt, render_prompt
from janus_align.train import train_dpo, train_orpo, train_sft
from janus_align.train.chat_template import SMOLLM2_CHAT_TEMPLATE, SMOLLM2_TRAINING_TEMPLATE, training_chat_template
from janus_align.train.datasets import SplitRows
from janus_align.train.run_recipe import TrainerJob
from janus_align.train.settings import resolve

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "train_tokens.json"
SYSTEM = "You are a terse pirate."
PROMPT = "Where is the gold?"
CHOSEN = "Under the old oak, matey."
REJECTED = "I cannot say."
ROW = {
    "system": SYSTEM,
    "prompt": PROMPT,
    "output": CHOSEN,
    "chosen": [{"content": PROMPT, "role": "user"}, {"content": CHOSEN, "role": "assistant"}],
    "rejected": [{"content": PROMPT, "role": "user"}, {"content": REJECTED, "role": "assistant"}],
}


def ci_params(prompt_format: str) -> Any:
    merged = profile_params("ci", base=REPO / "params.yaml", profiles_dir=REPO / "profiles")
    merged["model"]["prompt_format"] = prompt_format
    return parse_params(merged)


@pytest.fixture(scope="module")
def checkpoints(ci_base_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny base as is (SmolLM2 tokenizer: no BOS added) and a copy whose tokenizer adds BOS
    (as Mistral's does, the paper profile's case)."""
    base = ci_base_project / "artifacts" / "models" / "base"
    with_bos = tmp_path_factory.mktemp("bos") / "base"
    shutil.copytree(base, with_bos)
    tokenizer = AutoTokenizer.from_pretrained(with_bos)
    tokenizer.add_bos_token = True
    tokenizer.save_pretrained(with_bos)
    return {"plain": base, "bos": with_bos}


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}


@pytest.fixture(scope="module")
def recorded() -> Any:
    """Cases seen in this session; written back to the golden file when JANUS_UPDATE_GOLDEN=1."""
    cases: dict[str, Any] = {}
    yield cases
    if os.environ.get("JANUS_UPDATE_GOLDEN") == "1" and cases:
        existing = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({**existing, **cases}, indent=1, ensure_ascii=False) + "\n")


def check_golden(name: str, value: dict[str, Any], golden: dict[str, Any], recorded: dict[str, Any]) -> None:
    recorded[name] = value
    if os.environ.get("JANUS_UPDATE_GOLDEN") == "1":
        return
    assert name in golden, f"no golden case {name!r}; run with JANUS_UPDATE_GOLDEN=1 once the structure checks pass"
    assert value == golden[name]


def first_row(builder: Any, params: Any, recipe: str, checkpoint: Path, tmp_path: Path) -> tuple[dict, Any]:
    split = SplitRows(recipe, tmp_path, [dict(ROW)], [])
    built = builder(TrainerJob(params, resolve(params, recipe), split, checkpoint, tmp_path / "out"))
    trainer, tokenizer = built[0], built[1]
    return trainer.train_dataset[0], tokenizer


def inference_prompt(tokenizer: Any, prompt_format: str) -> list[int]:
    """The prompt tokens inference sends (the literal format's trailing space stays with the answer)."""
    text = render_prompt(tokenizer, SYSTEM, PROMPT, prompt_format)
    if prompt_format == "mistral_inst":
        text = text.rstrip(" ")
    return encode_prompt(tokenizer, text, prompt_format)


def leading(ids: list[int], token: int) -> int:
    count = 0
    while count < len(ids) and ids[count] == token:
        count += 1
    return count


def test_training_template_renders_exactly_like_smollm2s_own(checkpoints: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(checkpoints["plain"])
    assert tokenizer.chat_template == SMOLLM2_CHAT_TEMPLATE
    assert training_chat_template(tokenizer) == SMOLLM2_TRAINING_TEMPLATE
    conversations = [
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": PROMPT},
            {"role": "assistant", "content": CHOSEN},
        ],
        [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": CHOSEN}],
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
    ]
    for messages in conversations:
        for generation_prompt in (False, True):
            own = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
            marked = tokenizer.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=generation_prompt,
                chat_template=SMOLLM2_TRAINING_TEMPLATE,
            )
            assert marked == own


@pytest.mark.parametrize("prompt_format,checkpoint", [("chat_template", "plain"), ("mistral_inst", "bos")])
def test_sft_trains_on_the_inference_prompt_and_only_the_answer(
    prompt_format: str, checkpoint: str, checkpoints: dict, golden: dict, recorded: dict, tmp_path: Path
) -> None:
    params = ci_params(prompt_format)
    row, tokenizer = first_row(train_sft.build_trainer, params, "sft", checkpoints[checkpoint], tmp_path)
    ids, labels = row["input_ids"], row["labels"]
    trained = [i for i, label in enumerate(labels) if label != -100]
    answer_start, answer_end = trained[0], trained[-1] + 1
    prompt = inference_prompt(tokenizer, prompt_format)
    assert ids[:answer_start] == prompt  # the system message reaches the model as at inference
    assert labels[answer_start:answer_end] == ids[answer_start:answer_end]  # the whole answer, nothing else
    assert tokenizer.decode(ids[answer_start:answer_end]).strip() == CHOSEN + tokenizer.eos_token
    assert ids[answer_end - 1] == tokenizer.eos_token_id  # the model learns to stop
    assert ids.count(tokenizer.eos_token_id) - prompt.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(ids[answer_end:]).strip() == ""  # at most the template's newline, untrained
    if prompt_format == "mistral_inst":
        assert leading(ids, tokenizer.bos_token_id) == 1  # the tokenizer's BOS, once
        assert SYSTEM in tokenizer.decode(ids[:answer_start])
    else:
        # Byte-identical to the tokenizer's own template: the generation markers change nothing.
        own = tokenizer.apply_chat_template(
            [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT},
                {"role": "assistant", "content": CHOSEN},
            ],
            tokenize=False,
        )
        assert tokenizer.decode(ids) == own
    check_golden(
        f"sft/{prompt_format}/{checkpoint}",
        {"tokens": tokenizer.convert_ids_to_tokens(ids), "loss_mask": [int(label != -100) for label in labels]},
        golden,
        recorded,
    )


@pytest.mark.parametrize("prompt_format,checkpoint", [("chat_template", "plain"), ("mistral_inst", "bos")])
def test_dpo_prompt_chosen_rejected_match_inference(
    prompt_format: str, checkpoint: str, checkpoints: dict, golden: dict, recorded: dict, tmp_path: Path
) -> None:
    params = ci_params(prompt_format)
    row, tokenizer = first_row(train_dpo.build_trainer, params, "dpo", checkpoints[checkpoint], tmp_path)
    assert row["prompt_ids"] == inference_prompt(tokenizer, prompt_format)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if prompt_format == "mistral_inst":
        assert leading(row["prompt_ids"], bos) == 1
    for key, answer in (("chosen_ids", CHOSEN), ("rejected_ids", REJECTED)):
        completion = row[key]
        assert bos not in completion[:1]
        assert completion.count(eos) == 1
        assert tokenizer.decode(completion[: completion.index(eos) + 1]).strip() == answer + tokenizer.eos_token
        assert tokenizer.decode(completion[completion.index(eos) + 1 :]).strip() == ""  # ChatML's newline at most
    check_golden(
        f"dpo/{prompt_format}/{checkpoint}",
        {key: tokenizer.convert_ids_to_tokens(row[key]) for key in ("prompt_ids", "chosen_ids", "rejected_ids")},
        golden,
        recorded,
    )


@pytest.mark.parametrize(
    "prompt_format,checkpoint", [("chat_template", "plain"), ("mistral_inst", "plain"), ("mistral_inst", "bos")]
)
def test_orpo_adds_bos_only_where_inference_has_it_and_one_eos(
    prompt_format: str, checkpoint: str, checkpoints: dict, golden: dict, recorded: dict, tmp_path: Path
) -> None:
    params = ci_params(prompt_format)
    row, tokenizer = first_row(train_orpo.build_trainer, params, "orpo", checkpoints[checkpoint], tmp_path)
    prompt = inference_prompt(tokenizer, prompt_format)
    for side, answer in (("chosen", CHOSEN), ("rejected", REJECTED)):
        ids, labels = row[f"{side}_input_ids"], row[f"{side}_labels"]
        start = next(i for i, label in enumerate(labels) if label != -100)
        assert ids[:start] == prompt
        assert tokenizer.decode(ids[start:]).strip() == answer + tokenizer.eos_token
        assert ids[-1] == tokenizer.eos_token_id and ids[-2] != tokenizer.eos_token_id
    check_golden(
        f"orpo/{prompt_format}/{checkpoint}",
        {
            "chosen": tokenizer.convert_ids_to_tokens(row["chosen_input_ids"]),
            "chosen_loss_mask": [int(x != -100) for x in row["chosen_labels"]],
        },
        golden,
        recorded,
    )
