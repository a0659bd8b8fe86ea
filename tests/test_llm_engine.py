"""The in-process transformers backend through the engine, on the tiny random model.

Its weights are random, so the text is noise; what is pinned is the machinery: batching with
left padding keeps the order, token counts are honest, the system message reaches the model,
and constrained decoding makes even noise schema-valid JSON.
"""

from __future__ import annotations

import jsonschema
import pytest
import torch

from janus_align.config import Sampling, TransformersSettings
from janus_align.llm import ChatRequest
from janus_align.llm.cache import RequestCache
from janus_align.llm.decoding import DECODING_VERSION, sample_batch
from janus_align.llm.engine import LLMEngine
from janus_align.llm.prefill import length_chunks, plan_prefill, shared_prefix
from janus_align.llm.sampling import nucleus
from janus_align.llm.transformers_backend import TransformersBackend
from janus_align.models.checkpoint import load_causal_lm, resolve_dtype
from janus_align.models.prompt_format import encode_prompt, system_reaches_model

GREEDY = Sampling(max_new_tokens=8, temperature=0.0, top_p=1.0)
SAMPLED = Sampling(max_new_tokens=64, temperature=1.0, top_p=0.95)
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "feedback": {"type": "string", "maxLength": 24},
        "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 2},
    },
    "required": ["feedback", "score", "tags"],
    "additionalProperties": False,
}
# Prompts of clearly different lengths, not in length order (the backend sorts them internally).
PROMPTS = [
    "Summarize the water cycle in three sentences for a child who likes boats.",
    "Hi.",
    "List two prime numbers.",
    "Write a haiku about autumn leaves falling on a quiet pond at dusk, then explain the imagery you chose.",
    "Why is the sky blue?",
]


@pytest.fixture(scope="module")
def tiny_checkpoint(ci_base_project):
    return ci_base_project / "artifacts" / "models" / "base"


@pytest.fixture(scope="module")
def backend(tiny_checkpoint):
    return TransformersBackend(tiny_checkpoint, TransformersSettings(batch_size=4, dtype="float32"))


def engine_on(backend: TransformersBackend, batch_size: int | None = None) -> LLMEngine:
    """A fresh engine (empty in-memory cache) over the shared loaded model."""
    if batch_size is not None:
        backend.config = backend.config.model_copy(update={"batch_size": batch_size})
    return LLMEngine(backend, RequestCache(":memory:"))


def test_batched_generation_with_left_padding_returns_results_in_request_order(backend):
    requests = [ChatRequest.of(p, sampling=GREEDY, seed=i) for i, p in enumerate(PROMPTS)]
    batched = engine_on(backend, batch_size=4).complete(requests)
    assert backend.tokenizer.padding_side == "left"
    assert len(batched) == len(requests)
    # prompt_tokens is each row's unpadded length: it matches the request at the same index.
    expected_lengths = [len(encode_prompt(backend.tokenizer, backend.render(r), "chat_template")) for r in requests]
    assert [r.prompt_tokens for r in batched] == expected_lengths
    assert len(set(expected_lengths)) == len(PROMPTS)
    # Left padding leaves greedy answers unchanged: batched equals one request at a time.
    single = engine_on(backend, batch_size=1).complete(requests)
    assert [r.text for r in batched] == [r.text for r in single] and any(r.text for r in single)
    assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in single]


def test_token_counts_match_plain_generate(backend):
    request = ChatRequest.of("Count to three.", system="You count slowly.", sampling=GREEDY)
    engine = engine_on(backend, batch_size=4)
    [result] = engine.complete([request])
    ids = encode_prompt(backend.tokenizer, backend.render(request), "chat_template")
    with torch.inference_mode():
        output = backend.model.generate(
            torch.tensor([ids]),
            max_new_tokens=GREEDY.max_new_tokens,
            do_sample=False,
            eos_token_id=backend._eos_ids,
            pad_token_id=backend.tokenizer.pad_token_id,
        )
    new = output[0, len(ids) :].tolist()
    stop = next((k for k, t in enumerate(new) if t in backend._eos_ids), None)
    # Completion tokens are those generated, EOS included when one was generated, never padding.
    assert result.completion_tokens == (len(new) if stop is None else stop + 1)
    assert result.text == backend.tokenizer.decode(new[:stop], skip_special_tokens=True)
    assert result.prompt_tokens == len(ids)
    usage = engine.usage.as_dict()
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (len(ids), result.completion_tokens)


def test_schema_constrained_output_is_valid_json_even_from_a_random_model(backend):
    requests = [
        ChatRequest.of(f"Judge answer {i}. Reply in JSON.", sampling=SAMPLED, seed=i, response_schema=VERDICT_SCHEMA)
        for i in range(4)
    ]
    engine = engine_on(backend, batch_size=4)
    results = engine.complete(requests)
    for result in results:
        assert result.error is None, result.text
        jsonschema.validate(result.parsed, VERDICT_SCHEMA)
        assert result.attempts == 1  # the grammar got it right the first time: no re-ask
        assert result.completion_tokens <= SAMPLED.max_new_tokens
    assert engine.usage.requests == 4


def test_a_structured_answer_cut_at_max_new_tokens_is_returned_unparsed_not_reasked(backend):
    cut = Sampling(max_new_tokens=4, temperature=1.0, top_p=0.95)  # too few tokens to close the JSON
    request = ChatRequest.of("Judge this answer. Reply in JSON.", sampling=cut, seed=3, response_schema=VERDICT_SCHEMA)
    engine = engine_on(backend, batch_size=1)
    [result] = engine.complete([request])
    assert result.completion_tokens == cut.max_new_tokens
    assert result.error is not None and result.parsed is None
    assert result.attempts == 1 and engine.usage.requests == 1  # no re-ask with the cut answer in context


def test_the_synthesis_asks_a_cut_answer_again_with_new_seeds(backend):
    from janus_align.synth.teacher import ask

    cut = Sampling(max_new_tokens=4, temperature=1.0, top_p=0.95)
    seeds: list[int] = []

    def build(unit: str, attempt: int) -> ChatRequest:
        seeds.append(attempt)
        return ChatRequest.of(unit, sampling=cut, seed=attempt, response_schema=VERDICT_SCHEMA)

    [outcome] = ask(
        engine_on(backend, batch_size=1), ["Judge this. Reply in JSON."], build, lambda u, r: (r.parsed, None), 2, "t"
    )
    assert seeds == [0, 1, 2]  # the first ask, then two new seeds
    assert outcome.truncated and not outcome.ok and "cut at max_new_tokens 4" in outcome.reason


def test_chat_template_carries_the_system_message_to_the_model(backend):
    system = "You are a pirate who answers in rhymes."
    tokenizer = backend.tokenizer
    assert system_reaches_model(tokenizer, system, "chat_template")
    with_system = ChatRequest.of("Where is the treasure?", system=system, sampling=GREEDY)
    without = ChatRequest.of("Where is the treasure?", sampling=GREEDY)
    rendered = backend.render(with_system)
    assert rendered.count(system) == 1
    assert rendered.index(system) < rendered.index("Where is the treasure?")
    assert "named SmolLM" not in rendered  # ours replaces the template's default system text
    [answered, plain] = engine_on(backend).complete([with_system, without])
    system_ids = tokenizer(system, add_special_tokens=False)["input_ids"]
    default_ids = tokenizer(
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face", add_special_tokens=False
    )["input_ids"]
    assert answered.prompt_tokens - plain.prompt_tokens == len(system_ids) - len(default_ids)


def test_second_run_is_answered_from_the_cache_without_generating(backend, tmp_path):
    requests = [ChatRequest.of(p, sampling=GREEDY) for p in PROMPTS[:3]]
    first = LLMEngine(backend, RequestCache(tmp_path / "llm.sqlite")).complete(requests)
    again_engine = LLMEngine(backend, RequestCache(tmp_path / "llm.sqlite"))
    again = again_engine.complete(requests)
    assert [r.text for r in again] == [r.text for r in first] and all(r.cached for r in again)
    assert again_engine.usage.cached == 3 and again_engine.usage.completion_tokens == 0
    assert backend.model_id.startswith("base@")  # checkpoint name + weights fingerprint


def test_switching_the_dtype_misses_the_request_cache(tiny_checkpoint, tmp_path):
    """An answer computed in float32 is never served to a bfloat16 run (nor to other decoding code)."""
    request = ChatRequest.of("Name a colour.", sampling=SAMPLED, seed=5)
    path = tmp_path / "llm.sqlite"
    fp32 = TransformersBackend(tiny_checkpoint, TransformersSettings(batch_size=4, dtype="float32"))
    LLMEngine(fp32, RequestCache(path)).complete([request])
    [again] = LLMEngine(fp32, RequestCache(path)).complete([request])
    assert again.cached
    bf16 = TransformersBackend(tiny_checkpoint, TransformersSettings(batch_size=4, dtype="bfloat16"))
    engine = LLMEngine(bf16, RequestCache(path))
    [other] = engine.complete([request])
    assert not other.cached and engine.usage.cached == 0
    assert fp32.model_id.endswith(f"/float32/decoding-v{DECODING_VERSION}")
    assert bf16.model_id.endswith(f"/bfloat16/decoding-v{DECODING_VERSION}")


def mixed_batch(count: int) -> list[ChatRequest]:
    """Requests unlike each other: lengths, a shared system prefix, greedy rows, schema rows."""
    system = "You are a patient tutor who explains every step of your reasoning in plain words."
    requests = []
    for i in range(count):
        prompt = f"{PROMPTS[i % len(PROMPTS)]} (variant {i})" + " Please be thorough." * (i % 4)
        kind = i % 4
        requests.append(
            ChatRequest.of(
                prompt,
                system=system if kind in (0, 1) else None,
                sampling=GREEDY if kind == 2 else SAMPLED,
                seed=100 + i,
                response_schema=VERDICT_SCHEMA if kind == 3 else None,
            )
        )
    return requests


def test_a_sampled_answer_is_the_same_alone_in_a_batch_of_8_and_in_a_batch_of_32(backend):
    """A row draws from its own stream (seeded by its request), so its batch does not matter."""
    system = "You are a patient tutor who explains every step of your reasoning in plain words."
    target = ChatRequest.of("Explain why ice floats on water.", system=system, sampling=SAMPLED, seed=7)
    others = mixed_batch(31)
    answers = []
    for batch in ([target], [*others[:3], target, *others[3:7]], [*others[:20], target, *others[20:]]):
        results = engine_on(backend, batch_size=len(batch)).complete(batch)
        answers.append(results[batch.index(target)])
    assert len(answers[0].text) > 20 and answers[0].completion_tokens > 10  # sampled, not a stub
    assert [a.text for a in answers[1:]] == [answers[0].text] * 2
    assert [a.completion_tokens for a in answers] == [answers[0].completion_tokens] * 3
    # Two requests that differ only in their seed still sample differently.
    reseeded = ChatRequest.of("Explain why ice floats on water.", system=system, sampling=SAMPLED, seed=8)
    assert engine_on(backend, batch_size=1).complete([reseeded])[0].text != answers[0].text


def test_dtype_auto_is_bfloat16_only_on_a_cpu_with_native_bf16(tiny_checkpoint):
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolve_dtype("auto") == ("bfloat16" if native else "float32")
    assert (resolve_dtype("float32"), resolve_dtype("bfloat16")) == ("float32", "bfloat16")
    model = load_causal_lm(tiny_checkpoint, "auto")
    assert model.dtype == (torch.bfloat16 if native else torch.float32)


@pytest.fixture(scope="module")
def chaotic_model():
    """Large random weights: unlike the ci model, whose greedy rows repeat one token, rows differ."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=1.0,
    )
    return LlamaForCausalLM(config).eval()


def test_rows_leaving_the_batch_keep_every_other_row_identical_to_generate(chaotic_model):
    """A row that stops mid-batch leaves the KV cache; the rows that go on must not notice."""
    model = chaotic_model
    prompts = [torch.randint(3, 64, (n,)).tolist() for n in (5, 9, 3, 7)]
    steps = 16
    with torch.inference_mode():
        alone = [
            model.generate(
                torch.tensor([p]), max_new_tokens=steps, min_new_tokens=steps, do_sample=False, pad_token_id=0
            )[0, len(p) :].tolist()
            for p in prompts
        ]
    # Stop on a token the first row emits mid-way and another row never does: rows end at different steps.
    stop = next(t for t in alone[0][2:] if any(t not in other for other in alone[1:]))
    expected = [tokens[: tokens.index(stop)] if stop in tokens else tokens for tokens in alone]
    assert len({len(tokens) for tokens in expected}) > 1 and len(set(map(tuple, expected))) == len(prompts)
    greedy = Sampling(max_new_tokens=steps, temperature=0.0, top_p=1.0)
    decoded = sample_batch(model, prompts, 0, greedy, [stop], seeds=0)
    assert [row.tokens for row in decoded] == expected
    assert [row.finished for row in decoded] == [stop in tokens for tokens in alone]


def test_a_shared_prompt_prefix_run_once_gives_the_rows_their_own_answers(chaotic_model):
    """The prefix all rows share is prefilled once; padding then sits between it and each suffix."""
    torch.manual_seed(1)
    prefix = torch.randint(3, 64, (20,)).tolist()
    prompts = [prefix + torch.randint(3, 64, (n,)).tolist() for n in (4, 1, 9, 6)]
    greedy = Sampling(max_new_tokens=10, temperature=0.0, top_p=1.0, repetition_penalty=1.3)
    plan = plan_prefill(prompts)
    assert plan.prefix == prefix and plan.group_prefixes == [[]]
    shared = sample_batch(chaotic_model, prompts, 0, greedy, [], seeds=0)
    whole = sample_batch(chaotic_model, prompts, 0, greedy, [], seeds=0, share_prefixes=False)
    assert [row.tokens for row in shared] == [row.tokens for row in whole]
    assert len({tuple(row.tokens) for row in whole}) == len(prompts)
    assert shared_prefix([prefix, prefix + [5]]) == prefix[:-1]  # every row keeps a token of its own
    assert shared_prefix([prefix[:10] + [1], prefix[:10] + [2]]) == []  # too short to be worth it


def test_groups_of_rows_sharing_a_prefix_prefill_it_once_with_the_same_answers(chaotic_model):
    """Judge-like prompts: a batch-wide task prefix, then per answer a long shared part, then each rubric."""
    torch.manual_seed(2)
    task = torch.randint(3, 64, (18,)).tolist()
    answers = [torch.randint(3, 64, (n,)).tolist() for n in (40, 25, 33)]
    # Rubric-major order: the rows of one group are not next to each other.
    prompts = [task + answer + torch.randint(3, 64, (n,)).tolist() for n in (3, 7, 1) for answer in answers]
    plan = plan_prefill(prompts)
    assert plan.prefix == task
    assert sorted(map(len, plan.group_prefixes)) == [25, 33, 40]
    assert all(task + plan.group_prefixes[g] + s == p for p, g, s in zip(prompts, plan.group_of, plan.suffixes))
    greedy = Sampling(max_new_tokens=10, temperature=0.0, top_p=1.0, repetition_penalty=1.3)
    grouped = sample_batch(chaotic_model, prompts, 0, greedy, [], seeds=0)
    whole = sample_batch(chaotic_model, prompts, 0, greedy, [], seeds=0, share_prefixes=False)
    assert [row.tokens for row in grouped] == [row.tokens for row in whole]
    assert len({tuple(row.tokens) for row in whole}) == len(prompts)
    # Without a batch-wide prefix the groups still form; unrelated short prompts stay flat.
    assert sorted(map(len, plan_prefill([p[len(task) :] for p in prompts]).group_prefixes)) == [25, 33, 40]
    assert plan_prefill([[1, 2, 3], [4, 5], [6]]).group_prefixes == [[]]


def test_prompts_of_very_different_lengths_prefill_in_chunks_with_each_rows_own_answer(chaotic_model):
    """Short prompts are not padded to the longest: each length chunk is its own pass, after the
    shared prefix, and every row answers as in one padded pass over the whole prompts."""
    torch.manual_seed(3)
    prefix = torch.randint(3, 64, (20,)).tolist()
    prompts = [prefix + torch.randint(3, 64, (n,)).tolist() for n in (150, 4, 160, 7, 5, 140)]
    assert length_chunks(sorted(len(p) - len(prefix) for p in prompts)) == [(0, 3), (3, 6)]
    assert length_chunks([10, 11, 12]) == [(0, 3)]  # padding a few tokens is cheaper than a pass
    greedy = Sampling(max_new_tokens=10, temperature=0.0, top_p=1.0, repetition_penalty=1.3)
    chunked = sample_batch(chaotic_model, prompts, 0, greedy, [], seeds=0)
    one_pass = sample_batch(chaotic_model, prompts, 0, greedy, [], seeds=0, chunk_by_length=False)
    flat = sample_batch(chaotic_model, prompts, 0, greedy, [], seeds=0, share_prefixes=False, chunk_by_length=False)
    assert [row.tokens for row in chunked] == [row.tokens for row in one_pass] == [row.tokens for row in flat]
    assert len({tuple(row.tokens) for row in flat}) == len(prompts)


def test_rows_with_their_own_sampling_share_a_batch_and_answer_as_in_batches_of_their_own(chaotic_model):
    """Requests of different kinds decode together; each row keeps its own length limit,
    repetition penalty and temperature (greedy rows are unaffected by a sampled neighbour)."""
    torch.manual_seed(4)
    prompts = [torch.randint(3, 64, (n,)).tolist() for n in (6, 11, 8, 5, 9)]
    short = Sampling(max_new_tokens=5, temperature=0.0, top_p=1.0)
    penalized = Sampling(max_new_tokens=12, temperature=0.0, top_p=1.0, repetition_penalty=1.5)
    sampled = Sampling(max_new_tokens=7, temperature=1.0, top_p=0.9)
    settings = [short, penalized, short, penalized, sampled]
    mixed = sample_batch(chaotic_model, prompts, 0, settings, [], seeds=0)
    assert [len(row.tokens) for row in mixed] == [5, 12, 5, 12, 7] and not any(row.finished for row in mixed)
    for kind in (short, penalized):
        rows = [i for i, setting in enumerate(settings) if setting is kind]
        apart = sample_batch(chaotic_model, [prompts[i] for i in rows], 0, kind, [], seeds=0)
        assert [mixed[i].tokens for i in rows] == [row.tokens for row in apart]
    unpenalized = sample_batch(
        chaotic_model, [prompts[1]], 0, penalized.model_copy(update={"repetition_penalty": 1.0}), [], seeds=0
    )
    assert unpenalized[0].tokens != mixed[1].tokens  # the penalty did change that row


def test_nucleus_is_exactly_the_full_sort_nucleus_row_by_row():
    torch.manual_seed(0)
    peaked, flat = torch.randn(4, 5000) * 12, torch.randn(3, 5000) * 0.1
    logits = torch.cat([peaked[:2], flat[:1], peaked[2:], flat[1:]])
    logits[1, 50:] = float("-inf")  # a grammar-masked row
    ordered, order = torch.sort(logits, descending=True)
    probs = ordered.softmax(dim=-1)
    expected = torch.full_like(logits, float("-inf")).scatter(
        1, order, ordered.masked_fill(probs.cumsum(-1) - probs >= 0.9, float("-inf"))
    )
    got = torch.full_like(logits, float("-inf"))
    widths = {}
    for rows, kept, token_ids in nucleus(logits, 0.9, tiers=(64,)):
        got[rows] = got[rows].scatter(1, token_ids, kept)
        widths.update({int(row): token_ids.shape[1] for row in rows})
    assert torch.equal(got, expected)
    # Peaked rows take the fast path; only the flat rows pay for the full sort.
    assert widths == {0: 64, 1: 64, 2: 5000, 3: 64, 4: 64, 5: 5000, 6: 5000}


ONE_LINE = r"[^\n\r]+"
# Prompts that ask for lines. The random model ignores them, but its near-uniform draws over the
# vocabulary (131 of its 49k tokens hold a line break) give these rows a few line breaks anyway.
LIST_PROMPTS = [
    "List four fruits as a bulleted list, one per line.",
    "Write a numbered list of three steps to boil an egg.",
    "Give me a shopping list, one item per line.",
    "Write a short poem of four lines about rain.",
    "Name five rivers, each on its own line.",
    "Write a to-do list for a rainy Sunday.",
    "List the planets of the solar system, one per line.",
    "Write the lyrics of a short song with a chorus.",
]
LONG = Sampling(max_new_tokens=256, temperature=1.0, top_p=1.0)


def test_a_one_line_regex_keeps_line_breaks_out_of_answers_that_have_them_unconstrained(backend):
    free = [ChatRequest.of(p, sampling=LONG, seed=i) for i, p in enumerate(LIST_PROMPTS)]
    one_line = [ChatRequest.of(p, sampling=LONG, seed=i, response_regex=ONE_LINE) for i, p in enumerate(LIST_PROMPTS)]
    engine = engine_on(backend, batch_size=8)
    # One call: constrained and unconstrained requests share batches, each row under its own grammar.
    results = engine.complete(free + one_line)
    unconstrained, constrained = results[: len(free)], results[len(free) :]
    assert sum("\n" in r.text for r in unconstrained) >= 2, [r.text for r in unconstrained]
    for result in constrained:
        assert result.ok and result.text and "\n" not in result.text and "\r" not in result.text, result.text
        assert result.parsed is None and result.attempts == 1  # a regex is a constraint, not a parsed answer
    # The random model hardly ever picks EOS: rows cut at max_new_tokens come back like any other.
    assert all(r.completion_tokens <= LONG.max_new_tokens for r in results)
    assert any(r.completion_tokens == LONG.max_new_tokens for r in constrained)


def test_a_satisfied_regex_lets_the_row_end_on_eos(backend):
    """`(yes|no)` leaves nothing but EOS once matched: the row stops there, EOS counted."""
    requests = [ChatRequest.of(f"Is {i} even?", sampling=SAMPLED, seed=i, response_regex="(yes|no)") for i in range(3)]
    for result in engine_on(backend, batch_size=4).complete(requests):
        assert result.text in ("yes", "no")
        assert result.completion_tokens <= len(result.text) + 1 < SAMPLED.max_new_tokens  # at most a token a letter
    # One line: EOS only after a first character, never a token with a line break.
    import xgrammar as xgr

    from janus_align.synth.system_messages import PARAGRAPH_REGEX

    tokenizer, eos = backend.tokenizer, backend.tokenizer.eos_token_id
    breaks = [i for i in range(len(tokenizer)) if set(tokenizer.decode([i])) & {"\n", "\r"}]

    def allowed_after(regex: str, text: str) -> set[int]:
        """Which of EOS and the line-break tokens the grammar of `regex` allows after `text`."""
        grammar = backend._grammar(ChatRequest.of("x", sampling=SAMPLED, response_regex=regex))
        matcher = xgr.GrammarMatcher(grammar)
        assert all(matcher.accept_token(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"])
        mask = xgr.allocate_token_bitmask(1, grammar.tokenizer_info.vocab_size)
        matcher.fill_next_token_bitmask(mask, 0)
        return {i for i in [eos, *breaks] if (mask[0, i // 32] >> (i % 32)) & 1}

    assert breaks and allowed_after(ONE_LINE, "") == set()
    assert allowed_after(ONE_LINE, "You") == allowed_after(ONE_LINE, "Here it is:") == {eos}
    # The system messages' paragraph: no end on an introduction whose message never comes.
    assert allowed_after(PARAGRAPH_REGEX, "You are calm.") == {eos}
    assert allowed_after(PARAGRAPH_REGEX, "Here's the response:") == allowed_after(PARAGRAPH_REGEX, "It is: ") == set()


def test_grammars_are_cached_by_schema_or_regex(backend):
    def grammar(**constraint):
        return backend._grammar(ChatRequest.of("x", sampling=SAMPLED, **constraint))

    assert grammar() is None
    assert grammar(response_regex=ONE_LINE) is grammar(response_regex=ONE_LINE)
    assert grammar(response_regex=ONE_LINE) is not grammar(response_regex="(yes|no)")
    assert grammar(response_schema=VERDICT_SCHEMA) is grammar(response_schema=VERDICT_SCHEMA)
    assert grammar(response_schema=VERDICT_SCHEMA) is not grammar(response_regex=ONE_LINE)


def test_cache_key_covers_the_regex_and_keeps_older_keys():
    import hashlib
    import json

    plain = ChatRequest.of("Describe yourself.", sampling=GREEDY, seed=3)
    one_line = ChatRequest.of("Describe yourself.", sampling=GREEDY, seed=3, response_regex=ONE_LINE)
    other = ChatRequest.of("Describe yourself.", sampling=GREEDY, seed=3, response_regex="[a-z ]+")
    assert len({r.cache_key("m") for r in (plain, one_line, other)}) == 3
    # A request without a regex hashes as before the field existed: existing caches stay valid.
    before = {
        "model": "m",
        "messages": list(plain.messages),
        "sampling": GREEDY.model_dump(),
        "seed": 3,
        "schema": None,
    }
    blob = json.dumps(before, sort_keys=True, ensure_ascii=False).encode("utf-8")
    assert plain.cache_key("m") == hashlib.sha256(blob).hexdigest()
    with pytest.raises(ValueError, match="not both"):
        ChatRequest.of("x", sampling=GREEDY, response_schema=VERDICT_SCHEMA, response_regex=ONE_LINE)
