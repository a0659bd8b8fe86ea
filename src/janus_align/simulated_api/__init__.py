"""A simulated OpenAI API (chat completions, rate limits, the Batch API) on loopback, for tests and benchmarks.

A double of an external service: the openai SDK and our backends talk HTTP to it unchanged.
See server.py for the Python interface, `python -m janus_align.simulated_api --help` (or
`janus simulate-api`) for the command line.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SimSettings", "SimulatedAPI", "build_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so `janus --help` (which reads this package's CLI options) does not import uvicorn.
    if name in __all__:
        from janus_align.simulated_api import server

        return getattr(server, name)
    raise AttributeError(name)
