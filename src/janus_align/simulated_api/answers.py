"""What the simulated API answers: a valid reply for every kind of request the pipeline sends.

- `response_format` json_schema (or json_object with the schema named in the prompt): an
  instance generated from the schema (strings within their lengths, numbers in range, enums,
  arrays within minItems/maxItems, nested objects with their required keys, local `$ref`s).
- A judge prompt: the verdict in the form the prompt asks for: `[RESULT] n` (Prometheus
  absolute grading, 1..5), `[[n]]` (MT-Bench single grading, 1..10), `[[A>B]]` and its kin
  (Arena-Hard pairwise), `[[A]]`/`[[B]]`/`[[C]]` (MT-Bench pairwise).
- Anything else: free text, a few sentences.

Answers are a pure function of the request body and the simulator's seed, so a repeated request
gets the same answer (as a seeded real model would, mostly).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

_WORDS = (
    "clear concise answer detail example step reason context careful useful specific evidence "
    "structure balance tone user goal method result check source simple direct helpful option "
    "explain compare summary practical safe accurate brief thorough friendly formal focus point "
    "question topic plan idea value review outcome approach insight support guide"
).split()

# Snapshot ids the API reports for an alias (the `model` field of a response names the dated
# snapshot that served it); an id not listed is returned as given.
SNAPSHOTS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-4": "gpt-4-0613",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
}

# Free text stays short whatever max_tokens allows: the pipeline's parsers, not the length,
# are what a double must exercise, and long bodies only cost both sides CPU.
_FREE_TEXT_TOKENS = 120


def snapshot_of(model: str) -> str:
    """The dated snapshot id the API would report for `model`."""
    return SNAPSHOTS.get(model, model)


def count_tokens(text: str) -> int:
    """Approximate tokens of `text` (about four characters a token for English)."""
    return max(1, (len(text) + 3) // 4)


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Approximate prompt tokens of a chat: the content plus a few tokens of framing per message."""
    total = 3
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        total += 4 + count_tokens(text)
    return total


def request_rng(body: dict[str, Any], seed: int) -> random.Random:
    """A generator seeded by the request itself, so equal requests get equal answers."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big") ^ seed)


def _words(rng: random.Random, max_chars: int, min_chars: int = 1) -> str:
    """A phrase of words between `min_chars` and `max_chars` characters."""
    target = rng.randint(max(min_chars, min(max_chars, 12)), max(min_chars, min(max_chars, 80)))
    words: list[str] = []
    length = 0
    while length < target:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    text = " ".join(words)[:max_chars].rstrip()
    return text if len(text) >= min_chars else text.ljust(min_chars, "x")


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (`#/$defs/x`, `#/definitions/x`)."""
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def instance_of(schema: dict[str, Any], rng: random.Random, root: dict[str, Any] | None = None) -> Any:
    """A value valid under `schema` (the subset of JSON Schema that structured outputs use)."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return instance_of(rng.choice(schema[key]), rng, root)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(part, root))
        return instance_of(merged, rng, root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", properties))
        # Optional keys appear half the time, so readers meet both shapes.
        return {
            name: instance_of(sub, rng, root)
            for name, sub in properties.items()
            if name in required or rng.random() < 0.5
        }
    if kind == "array":
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 3)))
        items = schema.get("items", {"type": "string"})
        return [instance_of(items, rng, root) for _ in range(rng.randint(low, max(low, high)))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", max(low, 0) + 10))
        if kind == "integer":
            low_i = int(low) + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
            high_i = int(high) - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
            return rng.randint(low_i, max(low_i, high_i))
        return round(rng.uniform(float(low), float(high)), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _words(rng, int(schema.get("maxLength", 200)), int(schema.get("minLength", 1)))


def _schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks its answer to follow, or None for free text."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    if response_format.get("type") == "json_object":
        return {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    return None


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def _verdict(prompt: str, rng: random.Random) -> str | None:
    """The verdict line a judge prompt asks for, or None when the prompt is no judge's."""
    if "[RESULT]" in prompt:
        return f"[RESULT] {rng.randint(1, 5)}"
    if "[[A>>B]]" in prompt or "[[A>B]]" in prompt:
        return "My final verdict is: " + rng.choice(["[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]"])
    if '"[[A]]"' in prompt or "[[A]]" in prompt:
        return rng.choice(["[[A]]", "[[B]]", "[[C]]"])
    if "[[rating]]" in prompt or "[[5]]" in prompt or "Rating: [[" in prompt:
        return f"Rating: [[{rng.randint(1, 10)}]]"
    return None


def answer_text(body: dict[str, Any], seed: int) -> str:
    """The assistant's content for one chat-completions body."""
    rng = request_rng(body, seed)
    schema = _schema_of(body)
    if schema is not None:
        return json.dumps(instance_of(schema, rng), ensure_ascii=False)
    limit = min(int(body.get("max_tokens") or body.get("max_completion_tokens") or 256), _FREE_TEXT_TOKENS)
    verdict = _verdict(_last_user_text(body), rng)
    budget = limit * 4 - (len(verdict) + 12 if verdict else 0)
    sentences: list[str] = []
    while sum(len(s) + 1 for s in sentences) < min(budget, 400) - 60:
        sentences.append(_words(rng, 60, 20).capitalize() + ".")
    text = " ".join(sentences) or "Understood."
    return f"Feedback: {text} {verdict}" if verdict else text


def chat_completion(body: dict[str, Any], seed: int, number: int, created: int) -> dict[str, Any]:
    """The full chat.completion object for one request body."""
    content = answer_text(body, seed)
    prompt = prompt_tokens(body.get("messages") or [])
    completion = count_tokens(content)
    return {
        "id": f"chatcmpl-sim{number:012d}",
        "object": "chat.completion",
        "created": created,
        "model": snapshot_of(str(body.get("model", ""))),
        "system_fingerprint": "fp_simulated",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }
