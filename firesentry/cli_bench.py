"""`firesentry bench`: the side-by-side load benchmark (see bench/e2e.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from firesentry.config import Settings


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from bench.e2e import curve, run

    if args.gateway:
        from bench.gateway import gateway_bench

        gateway_bench(connections=args.connections, quick=args.quick)
    elif args.city:
        from bench.city import city

        city(devices=args.devices, baseline=args.baseline)
    elif args.priority:
        from bench.priority import priority

        priority(args.baseline, trials=args.trials)
    elif args.curve:
        fractions = tuple(float(f) for f in args.fractions.split(","))
        curve(args.baseline, args.quick, fractions, args.profile, lean=not args.paho_publisher)
    else:
        run(quick=args.quick, baseline=args.baseline)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` command."""
    b = sub.add_parser(
        "bench", help="measure limits, a naive baseline and firesentry; write bench/results/*.json"
    )
    b.add_argument("--quick", action="store_true", help="small run, under 2 minutes")
    b.add_argument(
        "--curve",
        action="store_true",
        help="the latency curve: p50/p95/p99 publish → webhook at fractions of the sustained rate",
    )
    b.add_argument(
        "--priority",
        action="store_true",
        help="a fire alarm published behind a telemetry backlog of 120,000 readings: publish →"
        " webhook over --trials trials (火警优先); --baseline measures another checkout too",
    )
    b.add_argument("--trials", type=int, default=20, help="with --priority")
    b.add_argument(
        "--city",
        action="store_true",
        help="the engine with --devices registered: start-up, memory idle and draining, the"
        " cost of a registry reload",
    )
    b.add_argument("--devices", type=int, default=100_000, help="with --city")
    b.add_argument(
        "--gateway",
        action="store_true",
        help="the GB/T 26875.3 gateway: --connections idle UTDs, then status and event frames"
        " per second against a bare confirm-at-once server in the same run",
    )
    b.add_argument("--connections", type=int, default=10_000, help="with --gateway")
    b.add_argument(
        "--fractions", default="0.25,0.5,0.75,1.0", help="of the sustained rate (with --curve)"
    )
    b.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also measure the engine of this checkout (e.g. a git"
        " worktree of the previous release) in the same run, and report the ratios",
    )
    b.add_argument(
        "--paho-publisher",
        action="store_true",
        help="with --curve: publish the live load with paho (as before 2026-12) instead of"
        " bench.rawpub; on 2 cores paho's per-message cost then competes with the engine",
    )
    b.add_argument(
        "--profile",
        action="store_true",
        help="with --curve: py-spy flame graphs of each engine at half the sustained rate",
    )
    b.set_defaults(fn=_bench)
