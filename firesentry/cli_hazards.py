"""`firesentry hazards`: list hazards, show one with its steps, take a step (as admin)."""

from __future__ import annotations

import argparse
from typing import Any, get_args

import psycopg

from alerts.routing import load_routing
from firesentry.channels import hazard_options
from firesentry.config import Settings
from store import hazards as store
from supervision.hazard_loop import act
from supervision.hazards import STATES, Action, HazardError


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    from firesentry.app import resolve_endpoints

    return psycopg.connect(resolve_endpoints(settings).dsn(), autocommit=True)


def _when(h: store.HazardRow) -> str:
    late = " OVERDUE" if h.overdue_at and h.state != "closed" else ""
    return f"{h.deadline.isoformat(timespec='minutes')}{late}"


def _list(settings: Settings, args: argparse.Namespace) -> int:
    states: list[str] | None = [args.state]
    if args.state == "open":
        states = [s for s in STATES if s != "closed"]
    elif args.state == "all":
        states = None
    f = store.HazardFilter(unit_id=args.unit, states=states, overdue=True if args.overdue else None)
    with _connect(settings) as conn:
        rows = store.search(conn, f, args.limit)
    for h in rows:
        print(
            f"{h.id:>6} {h.state:<11} {h.severity:<8} {h.unit_id:<16} {h.category:<15} "
            f"due {_when(h)}  {h.description[:60]}"
        )
    print(f"{len(rows)} hazard(s)")
    return 0


def _show(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        h = store.get(conn, args.id)
        steps = store.events(conn, args.id) if h else []
    if h is None:
        print(f"firesentry: no hazard {args.id}")
        return 1
    for name, value in (
        ("id", str(h.id)),
        ("unit", f"{h.unit_name} ({h.unit_id}), {h.district or '-'}"),
        ("device", h.device_id or "-"),
        ("category", h.category),
        ("severity", h.severity),
        ("state", h.state),
        ("description", h.description),
        ("found", f"{h.found_at.isoformat(timespec='minutes')} by {h.found_by} ({h.source})"),
        ("responsible", h.responsible or "-"),
        ("deadline", _when(h)),
        ("photos", str(h.photos)),
    ):
        print(f"{name:12} {value}")
    print(f"\nsteps ({len(steps)})")
    for e in steps:
        photos = f" photos {e.photo_ids}" if e.photo_ids else ""
        comment = f" — {e.comment}" if e.comment else ""
        print(f"  {e.at.isoformat(timespec='seconds')} {e.kind:<11} by {e.actor}{comment}{photos}")
    return 0


def _step(settings: Settings, args: argparse.Namespace) -> int:
    opts = hazard_options(settings, load_routing(settings.notify.routing_file).timezone)
    with _connect(settings) as conn:
        try:
            h = act(conn, opts, args.id, args.action, args.by, comment=args.comment)
        except HazardError as exc:
            print(f"firesentry: {exc}")
            return 1
    print(f"hazard {h.id} is now {h.state}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `hazards` command and its subcommands."""
    p = sub.add_parser("hazards", help="hazards (隐患): list, show, take a step")
    hsub = p.add_subparsers(dest="hazards_command", required=True)
    ls = hsub.add_parser("list", help="hazards, open ones by deadline first")
    ls.add_argument("--state", default="open", choices=["open", "all", *STATES])
    ls.add_argument("--unit")
    ls.add_argument("--overdue", action="store_true", help="only those past their deadline")
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(fn=_list)
    show = hsub.add_parser("show", help="one hazard with every step")
    show.add_argument("id", type=int)
    show.set_defaults(fn=_show)
    step = hsub.add_parser("step", help="take a step: " + ", ".join(get_args(Action)))
    step.add_argument("id", type=int)
    step.add_argument("action", choices=list(get_args(Action)))
    step.add_argument("--by", required=True, help="who does it (recorded)")
    step.add_argument("--comment", default="", help="evidence, or why a review failed")
    step.set_defaults(fn=_step)
