"""How a (system, user) pair becomes the text a model reads, identically in training and inference.

Three formats, as in the paper's code:
- `chat_template`: the tokenizer's own template with a system turn;
- `mistral_inst`: the literal `[INST] {system}\\n{prompt} [/INST] ` of the Janus repo;
- a chat template that has no system role gets the system text prepended to the user turn.
Some toolchains drop a system message silently; `system_reaches_model` is the check for that.
"""

from __future__ import annotations

from typing import Literal

from transformers import PreTrainedTokenizerBase

PromptFormat = Literal["chat_template", "mistral_inst"]
ADD_SPECIAL_TOKENS: dict[str, bool] = {"chat_template": False, "mistral_inst": True}
_PROBE = "SYSTEM-PROBE-7f3a"


def mistral_inst(system: str | None, user: str) -> str:
    """The Janus repo's literal format (note the trailing space after [/INST])."""
    prompt = f"{system}\n{user}".strip() if system else user.strip()
    return f"[INST] {prompt} [/INST] "


def template_supports_system(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the chat template renders a system message (and does not raise on one)."""
    return _supports_system(tokenizer.chat_template or "", tokenizer)


def _supports_system(template: str, tokenizer: PreTrainedTokenizerBase) -> bool:
    if not template:
        return False
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}],
            tokenize=False,
            add_generation_prompt=True,
        )
    except Exception:  # templates raise e.g. "System role not supported"
        return False
    return _PROBE in text


def to_messages(system: str | None, user: str, tokenizer: PreTrainedTokenizerBase) -> list[dict[str, str]]:
    """Chat messages for this tokenizer: a system turn if its template has one, else prepended."""
    if system and not template_supports_system(tokenizer):
        return [{"role": "user", "content": f"{system}\n{user}"}]
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]


def render_prompt(
    tokenizer: PreTrainedTokenizerBase,
    system: str | None,
    user: str,
    prompt_format: PromptFormat = "chat_template",
) -> str:
    """The exact prompt text up to where the assistant starts answering.

    Tokenize it with `add_special_tokens=ADD_SPECIAL_TOKENS[prompt_format]`: a chat template
    writes BOS itself when the model has one, the literal [INST] format leaves BOS to the
    tokenizer (as the paper's Axolotl config did), so BOS is neither missing nor doubled.
    """
    if prompt_format == "mistral_inst":
        return mistral_inst(system, user)
    if not tokenizer.chat_template:
        raise ValueError("tokenizer has no chat template; use prompt_format: mistral_inst")
    return _template_text(tokenizer, to_messages(system, user, tokenizer))


def _template_text(tokenizer: PreTrainedTokenizerBase, chat: list[dict[str, str]]) -> str:
    """The chat template's text for `chat`, up to the assistant's turn (untokenized, so a str)."""
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise TypeError(f"the chat template rendered {type(text).__name__}, not text")
    return text


def render_messages(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], prompt_format: PromptFormat = "chat_template"
) -> str:
    """Render a chat (system?, user) message list with `render_prompt`."""
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    users = [m["content"] for m in messages if m["role"] != "system"]
    if prompt_format == "chat_template" and len(users) > 1:
        # Multi-turn (re-asks): the template handles it; fold the system turn as above.
        chat = to_messages(system, messages[1 if system else 0]["content"], tokenizer) + [
            m for m in messages[(2 if system else 1) :]
        ]
        return _template_text(tokenizer, chat)
    if len(users) > 1:
        # The literal [INST] format has no turns of its own: join the conversation as text.
        user = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages if m["role"] != "system")
    else:
        user = users[0]
    return render_prompt(tokenizer, system, user, prompt_format)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str, prompt_format: PromptFormat) -> list[int]:
    return tokenizer(text, add_special_tokens=ADD_SPECIAL_TOKENS[prompt_format])["input_ids"]


def system_tokens(tokenizer: PreTrainedTokenizerBase, text: str, system: str, prompt_format: PromptFormat) -> list[int]:
    """The token ids of the encoded prompt that carry the system message's characters."""
    start = text.find(system)
    if start < 0:
        return []
    end = start + len(system)
    encoded = tokenizer(text, add_special_tokens=ADD_SPECIAL_TOKENS[prompt_format], return_offsets_mapping=True)
    return [i for i, (s, e) in zip(encoded["input_ids"], encoded["offset_mapping"]) if s < end and e > start]


def system_reaches_model(tokenizer: PreTrainedTokenizerBase, system: str, prompt_format: PromptFormat) -> bool:
    """Token-level check: the tokens the model reads decode back to the whole system message."""
    text = render_prompt(tokenizer, system, "Hello.", prompt_format)
    span = system_tokens(tokenizer, text, system, prompt_format)
    return bool(span) and str(tokenizer.decode(span)).strip() == system.strip()
