"""Stage `generate`: one candidate model answers every bench prompt under its system message.

`janus generate --model NAME`, where NAME is
- a pipeline model (`generate.candidates`): the checkpoint at artifacts/models/NAME (trained
  models are saved there merged, as plain checkpoints), run in process; or
- an OpenAI-compatible model (`generate.external`), called with the openai settings of
  `generate.external_llm` (server, key variable, concurrency, timeouts, retries, prices)
  with a system and a user turn (as the paper called GPT-3.5/GPT-4).

Prompts follow `generate.prompt_format` (`auto` = `model.prompt_format`, what training used):
the chat template with a system turn, the paper's literal `[INST] {system}\\n{prompt} [/INST] `,
or, for a template without a system role, the system text prepended to the user turn
(models/prompt_format.py does all three). Sampling is `generate.sampling`, seeded per item.

Best-of-N (`generate.best_of` > 1): N samples per prompt, the reward model at
artifacts/models/rm scores each (PAPER.md section 7), and the highest-scoring one is kept.

Writes artifacts/eval/responses/NAME.jsonl: one `rows.ResponseRow` per item
{id, source, model, response, error, ...}.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from janus_align import paths, tracking
from janus_align.bench.schema import BenchItem, load_bench
from janus_align.config import LLMSettings, OpenAISettings, Params, Sampling, TransformersSettings
from janus_align.errors import JanusError
from janus_align.evaluate.rows import ResponseRow
from janus_align.llm import ChatRequest, ChatResult
from janus_align.models.prompt_format import PromptFormat
from janus_align.records import write_jsonl
from janus_align.seeding import derive_seed

REWARD_MODEL = "rm"


def resolve_prompt_format(params: Params) -> PromptFormat:
    """`generate.prompt_format`, with `auto` meaning the format the models were trained with."""
    chosen = params.generate.prompt_format
    return params.model.prompt_format if chosen == "auto" else chosen


def candidate_config(params: Params, model: str) -> LLMSettings:
    """The engine settings for one candidate (raises JanusError for an unknown or missing model)."""
    settings = params.generate
    if model in settings.external:
        # API models get no repetition penalty (the paper's OpenAI sampling; OpenAI rejects it).
        return OpenAISettings(
            **settings.external_llm.model_dump(),
            model=model,
            sampling=settings.sampling.model_copy(update={"repetition_penalty": 1.0}),
        )
    checkpoint = paths.model_dir(model)
    if not (checkpoint / "config.json").is_file():
        known = ", ".join(settings.candidates + settings.external)
        stage = "prepare_model" if model == "base" else f"train_{model}"
        raise JanusError(
            f"generate --model {model}: no checkpoint at {checkpoint} (run `janus {stage}` first, "
            f"or name an external model from generate.external; candidates: {known})"
        )
    return local_config(params, model)


def local_config(params: Params, model: str) -> TransformersSettings:
    """The engine settings of an in-process checkpoint answering the bench."""
    settings = params.generate
    return TransformersSettings(
        model=model,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
        sampling=settings.sampling,
    )


def generation_requests(
    items: Sequence[BenchItem], params: Params, samples: int, sampling: Sampling | None = None
) -> list[ChatRequest]:
    """`samples` requests per item (item-major), each with its own seed (`generate.sampling` by default)."""
    return [
        ChatRequest.of(
            item.prompt,
            system=item.system or None,
            sampling=sampling or params.generate.sampling,
            seed=derive_seed(params.seed, "generate", item.id, sample),
        )
        for item in items
        for sample in range(samples)
    ]


def require_reward_model(best_of: int) -> Path | None:
    """The reward model's checkpoint when best-of-N needs it; a clear error when it is missing."""
    if best_of <= 1:
        return None
    checkpoint = paths.model_dir(REWARD_MODEL)
    if not (checkpoint / "config.json").is_file():
        raise JanusError(
            f"generate.best_of is {best_of} but there is no reward model at {checkpoint}: "
            "run `janus train_rm` first, or set generate.best_of: 1"
        )
    return checkpoint


def reward_text(tokenizer: Any, system: str | None, prompt: str, response: str, prompt_format: PromptFormat) -> str:
    """What the reward model reads: the RM split's `input` (system message, then the instruction,
    as one user turn; `synth.splits.rm_input`) followed by the response and EOS, in the model's
    prompt format."""
    from janus_align.models.prompt_format import mistral_inst, to_messages
    from janus_align.synth.splits import rm_input

    user = rm_input(system, prompt) if system else prompt
    if prompt_format == "mistral_inst":
        return mistral_inst(None, user) + response + tokenizer.eos_token
    messages = to_messages(None, user, tokenizer) + [{"role": "assistant", "content": response}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def reward_scores(checkpoint: Path, texts: Sequence[str], prompt_format: PromptFormat, max_length: int) -> list[float]:
    """Scalar rewards (AutoModelForSequenceClassification, num_labels=1), one text at a time.

    Over-long texts are cut from the left so the response, which is what is being compared,
    always stays in view.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from janus_align.models.checkpoint import load_tokenizer
    from janus_align.models.prompt_format import ADD_SPECIAL_TOKENS

    tokenizer = load_tokenizer(checkpoint, padding_side="right")
    tokenizer.truncation_side = "left"
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    scores = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(
                text,
                return_tensors="pt",
                truncation=True,
                max_length=max_length,
                add_special_tokens=ADD_SPECIAL_TOKENS[prompt_format],
            )
            scores.append(float(model(**encoded).logits[0, 0]))
    return scores


def pick_best(
    items: Sequence[BenchItem], results: Sequence[ChatResult], best_of: int, checkpoint: Path, params: Params
) -> list[tuple[int, list[float | None]]]:
    """Per item: (index of the kept sample, reward of every sample; None for a failed sample)."""
    from janus_align.models.checkpoint import load_tokenizer

    fmt = params.model.prompt_format  # the format the reward model was trained with
    tokenizer = load_tokenizer(checkpoint)
    texts, where = [], []
    for i, item in enumerate(items):
        for k in range(best_of):
            result = results[i * best_of + k]
            if result.ok:
                texts.append(reward_text(tokenizer, item.system or None, item.prompt, result.text, fmt))
                where.append((i, k))
    max_length = params.train.rm.max_length or params.train.common.max_length
    rewards: list[list[float | None]] = [[None] * best_of for _ in items]
    for (i, k), score in zip(where, reward_scores(checkpoint, texts, fmt, max_length)):
        rewards[i][k] = score
    chosen = []
    for row in rewards:
        scored = [(score, k) for k, score in enumerate(row) if score is not None]
        chosen.append((max(scored)[1] if scored else 0, row))
    return chosen


def response_rows(
    items: Sequence[BenchItem],
    results: Sequence[ChatResult],
    model_id: str,
    params: Params,
    model: str,
    prompt_format: str,
) -> list[ResponseRow]:
    """One row per item; with best-of-N, the sample the reward model preferred.

    `prompt_format` is recorded as provenance (`messages` for an API model, which gets the
    system and user turns as they are).
    """
    best_of = params.generate.best_of
    checkpoint = require_reward_model(best_of)
    picks: list[tuple[int, list[float | None]]] = (
        pick_best(items, results, best_of, checkpoint, params) if checkpoint else [(0, [None])] * len(items)
    )
    rows = []
    for i, (item, (kept, rewards)) in enumerate(zip(items, picks)):
        result = results[i * best_of + kept]
        scored = best_of > 1
        rows.append(
            ResponseRow(
                id=item.id,
                source=item.source,
                model=model,
                response=result.text if result.ok else "",
                error=result.error,
                model_id=model_id,
                prompt_format=prompt_format,
                seed=derive_seed(params.seed, "generate", item.id, kept),
                completion_tokens=result.completion_tokens,
                best_of=best_of if scored else None,
                reward=rewards[kept] if scored else None,
                rewards=rewards if scored else None,
            )
        )
    return rows


def answer(
    params: Params, config: LLMSettings, model: str, requests: list[ChatRequest]
) -> tuple[list[ChatResult], dict[str, Any], str]:
    """Open the candidate's engine (`model`: a name or a checkpoint path), answer, close it.

    Returns (results, usage, the engine's model id)."""
    from janus_align.llm.engine import opened_engine

    with opened_engine(
        config,
        f"generate --model {model}",
        model=model,
        prompt_format=resolve_prompt_format(params),
        payer="generate.external_llm",  # whose max_cost_usd an API candidate's answers count against
    ) as engine:
        return engine.complete(requests, desc=f"generate {config.model}"), engine.usage.as_dict(), engine.model_id


def run(params: Params, model: str) -> Path:
    import mlflow

    from janus_align.evaluate.responses import load_responses
    from janus_align.evaluate.scoring import mean_response_length

    config = candidate_config(params, model)
    require_reward_model(params.generate.best_of)  # fail before any sampling, not after
    items = load_bench(paths.BENCH_FILE)
    requests = generation_requests(items, params, params.generate.best_of, config.sampling)
    # The engine is closed on return: best-of-N loads the reward model with one model in memory.
    results, usage, model_id = answer(params, config, model, requests)
    label = resolve_prompt_format(params) if config.backend == "transformers" else "messages"
    rows = response_rows(items, results, model_id, params, model, label)
    out = paths.responses_file(model)
    write_jsonl(out, rows)
    failed = sum(1 for row in rows if row.error)
    length = mean_response_length(load_responses(out), [item.id for item in items])
    print(
        f"generate {model}: {len(rows)} responses -> {out} ({failed} failed, "
        f"mean {length or 0:.0f} chars, {usage['completion_tokens']} new tokens, {usage['wall_s']:.1f}s)"
    )
    mlflow.log_metrics(
        {"responses": len(rows), "failed_responses": failed, "mean_response_length": length or 0.0}
        | tracking.metrics(usage, "usage.")
    )
    mlflow.set_tags({"candidate": model, "prompt_format": label})
    return out


def answer_instructions(
    params: Params, model: str, instructions: Sequence[str], system: str | None, salt: str
) -> tuple[list[ChatResult], str]:
    """One candidate's answers to plain instructions (AlpacaEval, Arena-Hard), each seeded by its text.

    Returns (results, the engine's model id); a failed answer is a result with `error` set."""
    config = candidate_config(params, model)
    requests = [
        ChatRequest.of(text, system=system, sampling=config.sampling, seed=derive_seed(params.seed, salt, text))
        for text in instructions
    ]
    results, _, model_id = answer(params, config, model, requests)
    return results, model_id
