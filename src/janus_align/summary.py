"""`janus summary`: where the results of the last `make repro` are, in a few lines."""

from __future__ import annotations

import argparse
import json

from janus_align import paths


def main(args: argparse.Namespace | None = None) -> None:
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
        "  MLflow UI:   make ui   (then http://127.0.0.1:5000)",
    ]
    register = paths.REGISTER_METRICS
    if register.is_file():
        info = json.loads(register.read_text())
        lines.append(
            f"  registry:    models:/{info.get('name', 'janus')}@champion -> version {info.get('champion_version')}"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
