"""`firesentry bench`: the side-by-side load benchmark (see bench/e2e.py)."""

from __future__ import annotations

import argparse

from firesentry.config import Settings


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from bench.e2e import run

    run(quick=args.quick)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` command."""
    b = sub.add_parser(
        "bench", help="measure limits, a naive baseline and firesentry; write bench/results/*.json"
    )
    b.add_argument("--quick", action="store_true", help="small run, under 2 minutes")
    b.set_defaults(fn=_bench)
