"""Reading a judge's answer: the verdict (`parse_verdict`) and the feedback before it (`feedback_of`).

One parser everywhere: the free-text answers of API judges and the constrained JSON answers of
small local judges (`verdict_text` rewrites those as `Feedback: ... [RESULT] n`) are read by the
same `parse_verdict`. A parser change therefore reuses the cached judge answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from janus_align.llm import ChatResult

_NUMBER = r"(?<![\d.])(\d+)(?!\d|\.\d)"
# `[RESULT] 4`, `[RESULT]: 4`, `[RESULT] (4)`, `[RESULT] [4]`, `**[RESULT]** 4`, `[RESULT] Score: 4/5`...
_MARKER = re.compile(
    r"\[\s*(?:RESULT|SCORE)\s*\][\s:*=]*(?:(?:score|rating)\s*(?:of|is|=|:)?\s*)?[\s(\[*]*" + _NUMBER,
    re.IGNORECASE,
)
# Forms without the marker count only when they close the text, so a number inside the
# feedback ("3 of the 5 steps", "a score of 5 would need...") is never taken for the verdict.
_TRAILER = r"[\s.!*)\]\"'`]*$"
_END_FORMS = (
    re.compile(
        r"(?:score|result|rating|verdict)\s*(?:of|is|=|:)?[\s:*(\[]*"
        + _NUMBER
        + r"\s*(?:/\s*5|out\s+of\s+5)?"
        + _TRAILER,
        re.IGNORECASE,
    ),
    re.compile(_NUMBER + r"\s*/\s*5" + _TRAILER),
    re.compile(_NUMBER + r"\s+out\s+of\s+5" + _TRAILER, re.IGNORECASE),
)
# Special tokens some servers leave in the text.
_END_TOKENS = re.compile(r"(?:\s*(?:</s>|<\|im_end\|>|<\|eot_id\|>|<\|endoftext\|>))+\s*$")
_FEEDBACK_LABEL = re.compile(r"^\s*(?:#+\s*)?\**feedback\**\s*:?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class _Found:
    start: int  # where the verdict's wording starts (the feedback ends there)
    at: int  # where its number is
    number: int


def _find_verdict(text: str) -> _Found | None:
    """The verdict whose number is closest to the end of the text, in any accepted form.

    When two forms read the same number (`Score: 4/5` is both `Score: n` and `n/5`), the one
    that starts earlier wins, so its whole wording is cut from the feedback.
    """
    body = _END_TOKENS.sub("", text)
    matches = list(_MARKER.finditer(body)) + [m for form in _END_FORMS if (m := form.search(body))]
    found = [_Found(m.start(), m.start(1), int(m.group(1))) for m in matches]
    return max(found, key=lambda f: (f.at, -f.start)) if found else None


def parse_verdict(text: str | None) -> int | None:
    """The judge's score 1..5, read from the end of its answer; None when there is none.

    Accepts `[RESULT] 4`, `[RESULT]: 4`, `[RESULT] (4)`, `Score: 4`, `4/5`, `4 out of 5`.
    The verdict closest to the end wins; a number outside 1..5 there means no verdict (an
    earlier, valid-looking number is not used instead).

    >>> parse_verdict("Feedback: a score of 5 needs more detail. [RESULT] 3")
    3
    >>> parse_verdict("Feedback: covers 3 of the 5 steps. Score: 4/5.")
    4
    >>> parse_verdict("[RESULT] 7") is None
    True
    """
    if not text:
        return None
    found = _find_verdict(text)
    if found is None or not 1 <= found.number <= 5:
        return None
    return found.number


def feedback_of(text: str | None) -> str:
    """The judge's feedback: its text before the verdict, without the `Feedback:` label."""
    if not text:
        return ""
    found = _find_verdict(text)
    body = text[: found.start] if found is not None else text
    return _FEEDBACK_LABEL.sub("", body).strip().rstrip("*#-").strip()


def verdict_text(result: ChatResult) -> str:
    """The answer as text to read the verdict from: constrained JSON becomes `Feedback: .. [RESULT] n`."""
    parsed = result.parsed
    if isinstance(parsed, dict) and "score" in parsed:
        return f"Feedback: {parsed.get('feedback', '')} [RESULT] {parsed['score']}"
    return result.text
