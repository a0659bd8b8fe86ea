"""Chat templates fit for assistant-only loss: the same text, with `{% generation %}` markers.

TRL masks the loss to the assistant's tokens (`assistant_only_loss=True`) only when the chat
template marks them with `{% generation %}...{% endgeneration %}`. SmolLM2's ChatML template has
no markers and TRL does not know it, so training with it fails. `SMOLLM2_TRAINING_TEMPLATE` renders
byte-identical text (tests/test_train_golden.py pins that) and marks the assistant content plus its
`<|im_end|>`, so the model learns to stop. For any other template TRL's own table of training
templates is tried; when none fits, the SFT loader falls back to the conversational
prompt/completion format, where TRL masks everything before the completion.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

# SmolLM2-Instruct's template, as shipped in its tokenizer (and in the embedded GGUF).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The same rendering; the assistant's content and its end-of-turn token are the generation span.
SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

KNOWN_TRAINING_TEMPLATES = {SMOLLM2_CHAT_TEMPLATE: SMOLLM2_TRAINING_TEMPLATE}


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """A template with generation markers that renders like the tokenizer's own, or None.

    >>> training_chat_template(smollm2_tokenizer) == SMOLLM2_TRAINING_TEMPLATE  # doctest: +SKIP
    True
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        return None
    if has_generation_markers(template):
        return template
    if template in KNOWN_TRAINING_TEMPLATES:
        return KNOWN_TRAINING_TEMPLATES[template]
    try:
        return get_training_chat_template(tokenizer) or template
    except Exception:  # TRL raises for templates it has no training version of
        return None
