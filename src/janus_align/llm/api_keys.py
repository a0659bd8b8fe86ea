"""The API key a call to an OpenAI-compatible server sends: one rule, for the backend and `janus check`.

The key comes only from the environment variable the settings name (`api_key_env`), never from
params. OpenAI itself (no `base_url`, or one on api.openai.com) needs a real key; a server of
one's own (vLLM, llama.cpp, Ollama on loopback or a LAN) accepts any, so a placeholder is sent.
This module imports no HTTP client, so `janus check` applies the rule in no time.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from janus_align.config.schema import OpenAIConnection
from janus_align.errors import JanusError

OPENAI_HOST = "api.openai.com"
DEFAULT_BASE_URL = f"https://{OPENAI_HOST}/v1"
# The openai SDK's own variable for the server when none is given: honoured the same way here, so
# that the key rule, the plan and the request cache's model id all name the server actually called.
BASE_URL_ENV = "OPENAI_BASE_URL"
# Local servers accept any key; the openai client refuses to start without one.
PLACEHOLDER_KEY = "not-needed-for-local-servers"


class MissingAPIKeyError(JanusError, RuntimeError):
    """The settings target api.openai.com but their key variable is unset."""


def server_url(connection: OpenAIConnection) -> str:
    """The server a call goes to: `base_url`, else $OPENAI_BASE_URL, else api.openai.com.

    Part of the request cache's model id: answers of a server named only by the environment (a
    simulator, a proxy) must never be served later as api.openai.com's.
    """
    return (connection.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def needs_real_key(connection: OpenAIConnection) -> bool:
    """Whether the server is OpenAI's own (host api.openai.com, named or by default)."""
    return urlsplit(server_url(connection)).hostname == OPENAI_HOST


def api_key(connection: OpenAIConnection, model: str) -> str:
    """The key to send for `model`: $api_key_env, else a placeholder for a server of one's own.

    Raises MissingAPIKeyError (naming the variable, never a value) when OpenAI needs a key and
    the variable is unset or empty.
    """
    key = os.environ.get(connection.api_key_env)
    if key:
        return key
    if needs_real_key(connection):
        raise MissingAPIKeyError(
            f"backend openai (model {model}) needs the API key in ${connection.api_key_env}, which is not set "
            "(or set base_url to a local OpenAI-compatible server)"
        )
    return PLACEHOLDER_KEY
