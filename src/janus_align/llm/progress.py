"""The progress of one engine call: answers counted as each arrives, tokens too, with honest rates.

A backend reports each answer the moment it has it (the transformers backend as each row of a
batch ends, llm/decoding.py), so the count moves while a batch decodes instead of jumping from 0
to 100 %. Rates are averages since the start (tqdm's `smoothing=0`): a bursty count (answers that
arrive together at a batch's end) gives no ETA of hours after the first answer.

On a terminal this is a tqdm bar with the tokens generated and their rate beside it. Off a
terminal (`dvc repro 2> log`, CI, a pipe) a bar's carriage returns and cursor moves would fill the
log, so it writes plain lines instead: one at most every `LOG_INTERVAL_S` seconds and one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from janus_align.llm.types import ChatResult

LOG_INTERVAL_S = 30.0


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal (a closed or odd stream is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class RequestProgress:
    """Counts the answers of one engine call and the tokens they generated.

    >>> progress = RequestProgress(total=72, desc="judge sft")  # doctest: +SKIP
    >>> progress.advance(result)  # once per answer, as it arrives   # doctest: +SKIP
    >>> progress.close()  # doctest: +SKIP
    """

    def __init__(self, total: int, desc: str, stream: TextIO | None = None, unit: str = "req"):
        self.total, self.desc, self.unit = total, desc, unit
        self.status = ""  # what the server says of the work in flight (the batch backend's request counts)
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.tokens_out = 0
        self.started = time.perf_counter()
        self._last_line = self.started
        self._closed = False
        self._bar: tqdm[Any] | None = None
        if is_terminal(self.stream):
            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0, file=self.stream)

    def advance(self, result: ChatResult) -> None:
        """One more answer (`result.completion_tokens` generated)."""
        self.done += 1
        self.tokens_out += result.completion_tokens
        if self._bar is not None:
            postfix = f"{self.tokens_out} tok, {self.token_rate():.1f} tok/s"
            self._bar.set_postfix_str(f"{postfix}; {self.status}" if self.status else postfix, refresh=False)
            self._bar.update(1)
        elif time.perf_counter() - self._last_line >= LOG_INTERVAL_S:
            self._write_line()

    def extend(self, more: int, status: str = "") -> None:
        """`more` units joined the work (a batch resubmitted), and the `status` line beside the count."""
        self.total += more
        self.status = status or self.status
        if self._bar is not None:
            self._bar.total = self.total
            if self.status:
                self._bar.set_postfix_str(self.status, refresh=False)
            self._bar.refresh()
        elif time.perf_counter() - self._last_line >= LOG_INTERVAL_S:
            self._write_line()

    def token_rate(self) -> float:
        """Tokens generated per second since the call started."""
        elapsed = time.perf_counter() - self.started
        return self.tokens_out / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """`desc: 12/72 req (17%), 3400 tok (57.1 tok/s), 0:58 elapsed, ETA 4:50`: what a log shows."""
        elapsed = time.perf_counter() - self.started
        percent = 100 * self.done / self.total if self.total else 100.0
        text = (
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({percent:.0f}%), "
            f"{self.tokens_out} tok ({self.token_rate():.1f} tok/s), {tqdm.format_interval(elapsed)} elapsed"
        )
        if 0 < self.done < self.total:
            text += f", ETA {tqdm.format_interval(elapsed / self.done * (self.total - self.done))}"
        if self.status:
            text += f"; {self.status}"
        return text

    def _write_line(self) -> None:
        self._last_line = time.perf_counter()
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar, or write the last line (once, however often it is called)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        else:
            self._write_line()
