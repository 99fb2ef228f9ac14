"""`firesentry deadletters list|stats`: what ingest refused, and why."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import psycopg

from firesentry.config import Settings
from store import deadletters


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    from firesentry.app import resolve_endpoints

    return psycopg.connect(resolve_endpoints(settings).dsn(), autocommit=True)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        rows = deadletters.recent(conn, reason=args.reason, device_id=args.device, limit=args.limit)
    for d in rows:
        payload = d.payload[:80].decode("utf-8", "replace").replace("\n", " ")
        print(
            f"{d.received_at:%Y-%m-%d %H:%M:%S} {d.reason:18} {d.device_id or '-':16} "
            f"{d.topic}\n    {d.detail}\n    payload: {payload!r}"
        )
    if not rows:
        print("no dead letters")
    return 0


def _stats(settings: Settings, args: argparse.Namespace) -> int:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=args.hours)
    with _connect(settings) as conn:
        rows = deadletters.stats(conn, since)
    print(f"dead letters in the last {args.hours} h")
    print(f"{'reason':20} {'messages':>9} {'devices':>8}  last")
    for reason, n, devices, last in rows:
        print(f"{reason:20} {n:>9} {devices:>8}  {last:%Y-%m-%d %H:%M:%S}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `deadletters` command."""
    p = sub.add_parser("deadletters", help="rejected messages: recent ones, counts per reason")
    dsub = p.add_subparsers(dest="deadletters_command", required=True)
    ls = dsub.add_parser("list", help="newest rejected messages")
    ls.add_argument("--reason")
    ls.add_argument("--device")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(fn=_list)
    st = dsub.add_parser("stats", help="counts per reason")
    st.add_argument("--hours", type=float, default=24)
    st.set_defaults(fn=_stats)
