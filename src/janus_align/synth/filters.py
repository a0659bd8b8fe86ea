"""The instruction filters of the `instructions` stage, each a small pure function.

- `normalize_text` / `dedup_key`: whitespace normalization, and the key two prompts share when
  they are exact duplicates (casefolded, whitespace collapsed);
- `is_persona`: the instruction already gives the assistant a persona or role (PAPER.md, the
  persona filter), which would bias the preferences generated for it;
- `NearDuplicateIndex`: MinHash LSH (datasketch) finds candidates, the exact Jaccard of their
  character n-gram sets decides, so the result is exact and still scales to the paper's pool
  (the sets are kept as sorted 64-bit codes, `gram_codes`: 8 bytes a gram, not a string's ~90);
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

import numpy as np
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


def _flat(text: str) -> str:
    """The text n-grams are taken from: its casefolded words joined by single spaces."""
    return " ".join(_WORDS.findall(text.casefold()))


def ngrams(text: str, n: int) -> set[str]:
    """Character n-grams of the casefolded words joined by single spaces (punctuation dropped).

    A text shorter than n is one n-gram, so a very short prompt still matches itself.
    """
    flat = _flat(text)
    if len(flat) <= n:
        return {flat} if flat else set()
    return {flat[i : i + n] for i in range(len(flat) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


_POLY = np.uint64(0x100000001B3)  # odd, so the code of a gram depends on every character


def _mix(codes: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every bit of a code depends on every bit of its input."""
    codes = codes ^ (codes >> np.uint64(30))
    codes = codes * np.uint64(0xBF58476D1CE4E5B9)
    codes = codes ^ (codes >> np.uint64(27))
    codes = codes * np.uint64(0x94D049BB133111EB)
    return codes ^ (codes >> np.uint64(31))


def gram_codes(text: str, n: int) -> np.ndarray:
    """The n-grams of `ngrams(text, n)` as sorted distinct 64-bit codes (uint64).

    Two distinct grams share a code with probability about 2**-64, so the Jaccard of two code
    arrays is that of the gram sets (`code_jaccard`); numpy computes them without a string per
    gram.

    >>> text = "How can I be a better listener?"
    >>> len(gram_codes(text, 4)) == len(ngrams(text, 4)), gram_codes("", 4).size
    (True, 0)
    """
    points = np.frombuffer(_flat(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    width = min(n, len(points))  # a text shorter than n is one gram
    count = len(points) - width + 1
    codes = np.zeros(count if width else 0, dtype=np.uint64)
    for offset in range(width):  # polynomial in the characters, modulo 2**64 (numpy wraps)
        codes = codes * _POLY + points[offset : offset + count] + np.uint64(1)
    return np.unique(_mix(codes))


def code_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard of two `gram_codes` arrays.

    >>> round(code_jaccard(gram_codes("How can I be a better listener?", 4),
    ...                    gram_codes("How can I become a better listener?", 4)), 2)
    0.76
    """
    shared = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - shared
    return shared / union if union else 1.0


def _minhash_input(codes: np.ndarray) -> list[int]:
    """32-bit values for datasketch's MinHash (its affine scheme takes 32-bit hashes): the
    codes' high halves, already mixed."""
    return (codes >> np.uint64(32)).tolist()


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
        self._grams: dict[str, np.ndarray] = {}
        # One MinHash's permutations, shared: drawing them for every text cost more than hashing it.
        self._permutations = MinHash(num_perm=_NUM_PERM, seed=seed).permutations

    def add(self, key: str, text: str) -> tuple[str, float] | None:
        """Index `text` under `key`, or return (key of the kept text it duplicates, Jaccard)."""
        grams = gram_codes(text, self.n)
        signature = MinHash(
            num_perm=_NUM_PERM, seed=self.seed, hashfunc=int, permutations=self._permutations, scheme="affine32"
        )
        signature.update_batch(_minhash_input(grams))
        best: tuple[str, float] | None = None
        for other in self._lsh.query(signature):
            similarity = code_jaccard(grams, self._grams[other])
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
