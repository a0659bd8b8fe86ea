"""The instruction filters of the `instructions` stage, each a small pure function.

- `normalize_text` / `dedup_key`: whitespace normalization, and the key two prompts share when
  they are exact duplicates (casefolded, whitespace collapsed);
- `is_persona`: the instruction already gives the assistant a persona or role (PAPER.md, the
  persona filter), which would bias the preferences generated for it;
- `NearDuplicateIndex`: MinHash LSH (datasketch) finds candidates, the exact Jaccard of their
  character n-gram sets decides, so the result is exact and still scales to the paper's pool;
- `BenchIndex`: n-gram decontamination, the share of a bench prompt's n-grams that an
  instruction contains (an inverted index keeps it linear in the pool size).

>>> is_persona("Act as a senior developer and review my plan.")
True
>>> round(jaccard(ngrams("How can I be a better listener?", 4), ngrams("How can I become a better listener?", 4)), 2)
0.76
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from datasketch import MinHash, MinHashLSH

# The paper's regex, roughly `\b(you are|you're|imagine|take \w* role)\b`, widened to the other
# common ways of assigning a role ("act as", "pretend to be", "role-play"). It runs on the
# instruction only: an input passage may quote anything.
PERSONA_PATTERN = re.compile(
    r"\b(?:you\s+are|you['’]re|youre|imagine|act\s+as|acting\s+as|pretend\s+(?:to\s+be|you)"
    r"|(?:take|play|assume)\s+(?:on\s+)?(?:\w+\s+){0,3}roles?|role[-\s]?play)\b",
    re.IGNORECASE,
)
# Recall of the LSH candidate search: it runs at this share of the threshold, and every
# candidate is then checked exactly, so a lower value only costs time.
_LSH_RECALL_MARGIN = 0.75
_NUM_PERM = 128
_UNICODE_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000\ufeff]")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_WORDS = re.compile(r"\w+")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str, collapse_inner: bool = True) -> str:
    """Unify line ends and odd spaces, drop trailing blanks and extra blank lines, strip.

    `collapse_inner` also squeezes runs of spaces inside a line (never the indentation, so code
    in an input keeps its shape).
    """
    text = _UNICODE_SPACES.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.rstrip() for line in text.split("\n")]
    if collapse_inner:
        lines = [_INNER_SPACES.sub(" ", line) for line in lines]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def join_prompt(instruction: str, input_text: str) -> str:
    """The user turn: the instruction, then its input (if any) after a blank line."""
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def dedup_key(text: str) -> str:
    """What two exact duplicates have in common: casefolded text with whitespace collapsed."""
    return _WHITESPACE.sub(" ", text).strip().casefold()


def is_persona(instruction: str) -> bool:
    return PERSONA_PATTERN.search(instruction) is not None


def ngrams(text: str, n: int) -> set[str]:
    """Character n-grams of the casefolded words joined by single spaces (punctuation dropped).

    A text shorter than n is one n-gram, so a very short prompt still matches itself.
    """
    flat = " ".join(_WORDS.findall(text.casefold()))
    if len(flat) <= n:
        return {flat} if flat else set()
    return {flat[i : i + n] for i in range(len(flat) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDuplicateIndex:
    """Keeps the first of every group of near-duplicate texts.

    >>> index = NearDuplicateIndex(threshold=0.6, n=4, seed=1)
    >>> index.add("a", "What causes the seasons on Earth?") is None
    True
    >>> index.add("b", "What causes the seasons on planet Earth?")
    ('a', 0.71)
    """

    def __init__(self, threshold: float, n: int, seed: int):
        self.threshold = threshold
        self.n = n
        self.seed = seed
        self._lsh = MinHashLSH(threshold=max(0.05, threshold * _LSH_RECALL_MARGIN), num_perm=_NUM_PERM)
        self._grams: dict[str, set[str]] = {}

    def add(self, key: str, text: str) -> tuple[str, float] | None:
        """Index `text` under `key`, or return (key of the kept text it duplicates, Jaccard)."""
        grams = ngrams(text, self.n)
        signature = MinHash(num_perm=_NUM_PERM, seed=self.seed)
        signature.update_batch([g.encode("utf-8") for g in grams])
        best: tuple[str, float] | None = None
        for other in self._lsh.query(signature):
            similarity = jaccard(grams, self._grams[other])
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (other, round(similarity, 2))
        if best is None:
            self._lsh.insert(key, signature)
            self._grams[key] = grams
        return best


class BenchIndex:
    """Which bench prompt an instruction overlaps, as the share of that prompt's n-grams it contains.

    >>> index = BenchIndex(["How does a refrigerator keep food cold?"], n=8)
    >>> index.overlap("Explain how a refrigerator keeps food cold.")[1] > 0.5
    True
    """

    def __init__(self, prompts: list[str], n: int):
        self.prompts = prompts
        self.n = n
        self._sizes = [len(ngrams(p, n)) for p in prompts]
        self._postings: dict[str, list[int]] = defaultdict(list)
        for index, prompt in enumerate(prompts):
            for gram in ngrams(prompt, n):
                self._postings[gram].append(index)

    def overlap(self, text: str) -> tuple[str | None, float]:
        """(most overlapped bench prompt, share of its n-grams found in `text`)."""
        hits: Counter[int] = Counter()
        for gram in ngrams(text, self.n):
            hits.update(self._postings.get(gram, ()))
        if not hits:
            return None, 0.0
        index, share = max(((i, count / self._sizes[i]) for i, count in hits.items()), key=lambda t: t[1])
        return self.prompts[index], share
