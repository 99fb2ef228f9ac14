"""`firesentry grades`: grade units now, show their four-colour grade and its history."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

import psycopg

from firesentry.config import Settings
from store import grades as store_grades
from supervision.grader import grade_now
from supervision.model import GRADE_ZH, Grade, RiskModelError, load_model


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    from firesentry.app import resolve_endpoints

    return psycopg.connect(resolve_endpoints(settings).dsn(), autocommit=True)


def _reason_text(reasons: list[dict[str, Any]], lang: str) -> str:
    key = "zh-CN" if lang == "zh-CN" else "en"
    sep = "，" if lang == "zh-CN" else ", "
    return sep.join(str(r[key]) for r in reasons) or ("无风险因素" if lang == "zh-CN" else "-")


def _colour(grade: str, lang: str) -> str:
    return GRADE_ZH[Grade(grade)] if lang == "zh-CN" else grade


def _now(settings: Settings, args: argparse.Namespace) -> int:
    try:
        model = load_model(Path(args.model) if args.model else settings.supervision.risk_model)
    except RiskModelError as exc:
        print(exc)
        return 1
    units = args.unit or None
    with _connect(settings) as conn:
        run = grade_now(
            conn, model, dt.datetime.now(dt.UTC), units=units, trigger="request:cli", wait=True
        )
    if units and not run.grades:
        print(f"no such unit: {', '.join(units)}")
        return 1
    for g in run.grades:
        colour = _colour(g.grade.value, args.lang)
        print(f"{g.unit_id:<24} {colour:<7} {g.score:>7.1f}  {g.explain(args.lang)}")
    counts = {c: sum(1 for g in run.grades if g.grade == c) for c in Grade}
    print(
        f"{len(run.grades)} units graded ({model.version}): "
        + ", ".join(f"{counts[c]} {c.value}" for c in reversed(list(Grade)))
        + f"; {run.changed} changed"
    )
    return 0


def _history(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        current = store_grades.current_grades(conn, [args.unit]).get(args.unit)
        changes = store_grades.grade_history(conn, args.unit, args.limit)
    if current is None:
        print(
            f"unit {args.unit} has not been graded yet (firesentry grades now --unit {args.unit})"
        )
        return 1
    print(
        f"{args.unit}: {_colour(current.grade, args.lang)} since "
        f"{current.since.isoformat(timespec='seconds')} (score {current.score:.1f}): "
        f"{_reason_text(current.reasons, args.lang)}"
    )
    for c in changes:
        before = _colour(c.from_grade, args.lang) if c.from_grade else "-"
        print(
            f"  {c.at.isoformat(timespec='seconds')}  {before:>6} → "
            f"{_colour(c.to_grade, args.lang):<6} {c.score:>6.1f}  {c.trigger:<14} "
            f"{_reason_text(c.reasons, args.lang)}"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `grades` command and its subcommands."""
    p = sub.add_parser("grades", help="four-colour risk grades of units: grade now, history")
    gsub = p.add_subparsers(dest="grades_command", required=True)
    now = gsub.add_parser("now", help="grade units from their live data and store the grades")
    now.add_argument("--unit", action="append", help="only this unit (repeat for more)")
    now.add_argument("--model", help="a risk model file (default: the configured one)")
    now.add_argument("--lang", choices=["en", "zh-CN"], default="en")
    now.set_defaults(fn=_now)
    hist = gsub.add_parser("history", help="a unit's grade, its reasons and its changes")
    hist.add_argument("unit")
    hist.add_argument("--limit", type=int, default=20)
    hist.add_argument("--lang", choices=["en", "zh-CN"], default="en")
    hist.set_defaults(fn=_history)
