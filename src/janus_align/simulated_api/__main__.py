"""`python -m janus_align.simulated_api`: serve the simulated OpenAI API until interrupted."""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options (shared by `janus simulate-api`)."""
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    parser.add_argument("--rpm", type=float, default=None, help="requests per minute (default: unlimited)")
    parser.add_argument("--tpm", type=float, default=None, help="tokens per minute (default: unlimited)")
    parser.add_argument("--latency-median", type=float, default=0.05, help="median latency in seconds")
    parser.add_argument("--latency-sigma", type=float, default=0.5, help="sigma of the lognormal latency")
    parser.add_argument("--batch-complete-after", type=float, default=2.0, help="seconds a batch takes")
    parser.add_argument("--batch-failure-fraction", type=float, default=0.0, help="share of batch requests failing")
    parser.add_argument("--batch-expire-fraction", type=float, default=0.0, help="share never finishing (expiry)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--limit-window", type=float, default=60.0, help="seconds of allowance a full limit bucket holds (burst)"
    )


def main(args: argparse.Namespace) -> None:
    from janus_align.simulated_api.server import SimulatedAPI

    api = SimulatedAPI(
        rpm=args.rpm,
        tpm=args.tpm,
        latency_median_s=args.latency_median,
        latency_sigma=args.latency_sigma,
        batch_complete_after_s=args.batch_complete_after,
        batch_failure_fraction=args.batch_failure_fraction,
        batch_expire_fraction=args.batch_expire_fraction,
        seed=args.seed,
        port=args.port or None,
        limit_window_s=args.limit_window,
    )
    with api:
        # The first line names the address, so a parent process can read where to connect.
        print(f"simulated OpenAI API at {api.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m janus_align.simulated_api", description=__doc__)
    add_arguments(cli)
    main(cli.parse_args(sys.argv[1:]))
