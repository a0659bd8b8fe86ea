"""`janus summary`: where the results of the last `make repro` are, in a few lines.

The registry line asks the registry itself, not only metrics/register.json: on a second clone
(or with another `MLFLOW_TRACKING_URI`) that file still names the version the first machine
registered, while this machine's store may not hold the model at all. So the line says which
store is in effect, and whether `champion` is found there, missing, or the store does not answer.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from janus_align import paths

CHAMPION = "champion"


def _store_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def registry_line(name: str, uri: str, recorded: Any = None) -> str:
    """Where `models:/NAME@champion` is and what the store at `uri` answers for it.

    `recorded` is the champion version metrics/register.json names, shown when the store disagrees.
    """
    ref = f"models:/{name}@{CHAMPION}"
    noted = f" (metrics/register.json says version {recorded}, registered elsewhere?)" if recorded else ""
    store = _store_file(uri)
    if store is not None and not store.is_file():  # asking would create an empty store here
        return f"{ref} not found in {uri}: no such database file{noted}"
    # A server that is down answers at once, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return f"{ref} not found in {uri}{noted}"
        return f"{ref}: {uri} does not answer ({exc.message.splitlines()[0]})"
    except Exception as exc:  # a store that cannot be reached raises what its client raises
        return f"{ref}: {uri} does not answer ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    differs = (
        f"; metrics/register.json says version {recorded}" if recorded and str(recorded) != str(version.version) else ""
    )
    return f"{ref} -> version {version.version} in {uri}{differs}"


def main(args: argparse.Namespace | None = None) -> None:
    from janus_align.config import load_params
    from janus_align.errors import JanusError
    from janus_align.tracking import is_remote_store, tracking_uri

    try:
        params = load_params(getattr(args, "params", None) or "params.yaml")
    except JanusError as exc:
        params, problem = None, exc
    uri = tracking_uri(params) if params is not None else ""
    lines = ["", "Janus pipeline finished. Results:"]
    board = paths.LEADERBOARD
    if board.is_file():
        scores = json.loads(board.read_text()).get("models", {})
        ranked = sorted(scores.items(), key=lambda kv: -(kv[1].get("overall") or 0))
        lines.append("  leaderboard: " + ", ".join(f"{m} {s.get('overall', float('nan')):.2f}" for m, s in ranked))
    lines += [
        f"  metrics:     dvc metrics show   ({paths.METRICS}/)",
        f"  report:      {paths.REPORT_HTML}",
        f"  data docs:   {paths.DATA_DOCS / 'index.html'}",
        f"  MLflow UI:   {uri}" if is_remote_store(uri) else "  MLflow UI:   make ui   (then http://127.0.0.1:5000)",
    ]
    register = paths.REGISTER_METRICS
    info = json.loads(register.read_text()) if register.is_file() else {}
    if params is None:
        lines.append(f"  registry:    unknown ({problem})")
    else:
        name = params.mlflow.registered_model
        lines.append(f"  registry:    {registry_line(name, uri, info.get('champion_version'))}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
