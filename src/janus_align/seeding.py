"""Per-request seeds derived from the run seed and what the request is for (every stage's).

A request's seed depends only on (run seed, purpose, item id, index...), never on the order in
which requests are built or batched, so adding one candidate or one repeat leaves every other
request's seed (and its cached answer) unchanged, and a stage resumed after a kill asks the very
requests it asked before (their answers come from the request cache). Synthesis derives
`derive_seed(seed, stage, row_id, attempt)`, the judge and generation their own parts.
"""

from __future__ import annotations

import hashlib
import json


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed for (seed, *parts).

    >>> derive_seed(42, "judge", "item-1", 0) == derive_seed(42, "judge", "item-1", 0)
    True
    >>> derive_seed(42, "judge", "item-1", 0) != derive_seed(42, "judge", "item-1", 1)
    True
    """
    blob = json.dumps([seed, *[str(p) for p in parts]], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF
