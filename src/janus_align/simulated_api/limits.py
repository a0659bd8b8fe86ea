"""Per-minute request and token limits as OpenAI announces and enforces them.

Each limit is a bucket that refills continuously at the limit's rate and holds `window_s` worth
of it: a minute's allowance by default (a full bucket allows a burst, then rpm/60 requests a
second); a shorter window is OpenAI's "quantized" enforcement (60,000 RPM enforced as 1,000
requests a second), which lets a short benchmark meet the limit. A request takes one
request and its estimated tokens (prompt plus `max_tokens`, as OpenAI counts at admission);
when either bucket lacks them the answer is 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


def duration(seconds: float) -> str:
    """OpenAI's duration format for the reset headers: `6m0s`, `1s`, `20ms`, `1m30.5s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{rest_text}s" if minutes else f"{rest_text}s"


@dataclass
class Bucket:
    """A per-minute allowance that refills continuously; `per_minute` None means no limit."""

    per_minute: float | None
    window_s: float = 60.0
    level: float = 0.0
    at: float = 0.0

    def __post_init__(self) -> None:
        self.level = self.capacity
        self.at = time.monotonic()

    @property
    def capacity(self) -> float:
        return float(self.per_minute or 0) * self.window_s / 60.0

    def _refill(self, now: float) -> None:
        if self.per_minute is not None:
            self.level = min(self.capacity, self.level + (now - self.at) * self.per_minute / 60.0)
        self.at = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` is available (0 when it is now)."""
        self._refill(now)
        if self.per_minute is None:
            return 0.0
        amount = min(amount, self.capacity)  # a request above the whole limit waits for a full bucket
        return max(0.0, (amount - self.level) * 60.0 / self.per_minute)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return 0.0 if self.per_minute is None else (self.capacity - self.level) * 60.0 / self.per_minute


class RateLimiter:
    """The request and token buckets of one simulated account (all models share them)."""

    def __init__(self, rpm: float | None, tpm: float | None, window_s: float = 60.0):
        self.requests = Bucket(rpm, window_s)
        self.tokens = Bucket(tpm, window_s)
        self._lock = threading.Lock()

    def admit(self, tokens: int) -> tuple[float, dict[str, str]]:
        """Take one request and `tokens`; returns (retry_after_s, headers): 0 when admitted."""
        with self._lock:
            now = time.monotonic()
            wait = max(self.requests.wait_for(1, now), self.tokens.wait_for(tokens, now))
            if wait == 0:
                if self.requests.per_minute is not None:
                    self.requests.level -= 1
                if self.tokens.per_minute is not None:
                    self.tokens.level -= min(tokens, self.tokens.capacity)
            return wait, self._headers()

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket.per_minute is None:
                continue
            headers[f"x-ratelimit-limit-{name}"] = str(int(bucket.per_minute))
            headers[f"x-ratelimit-remaining-{name}"] = str(max(0, math.floor(bucket.level)))
            headers[f"x-ratelimit-reset-{name}"] = duration(bucket.reset_s())
        return headers
