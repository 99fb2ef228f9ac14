"""Turn rule transitions into alert rows, history lines and outbox rows, in the caller's transaction.

Read a snapshot (a constant number of queries), plan in memory (alerts.planner), write the
plan (a constant number of statements): the batch's cost in round trips does not grow with
the number of alerts it opens or the parties they reach.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog

from alerts.dispatch import Dispatcher
from alerts.planner import Planned, Snapshot, keys_of, new_alerts_needed, plan_transitions
from devices.registry import Registry
from rules.engine import Transition
from store import alert_plan
from store import silences as store_silences

log = structlog.get_logger("alerts")


@dataclass(slots=True)
class Outcome:
    """What applying a batch of transitions did."""

    opened: int = 0
    repeated: int = 0
    cleared: int = 0
    notifications: int = 0


def read_snapshot(
    conn: psycopg.Connection[Any],
    transitions: Sequence[Transition],
    registry: Registry,
    dispatcher: Dispatcher,
) -> Snapshot:
    """What planning these transitions needs, in at most four queries."""
    keys = keys_of(transitions, registry)
    rows = alert_plan.open_alerts(conn, keys)
    ids = alert_plan.reserve_ids(conn, new_alerts_needed(transitions, registry, set(rows)))
    devices = [registry.by_num[num] for num, _ in keys]
    units = {d.unit_id for d in devices} | {r.unit_id for r in rows.values()}
    silences = store_silences.active_or_named(
        conn,
        units,
        {d.id for d in devices},
        {rule for _, rule in keys},
        {r.silenced_by for r in rows.values() if r.silenced_by is not None},
    )
    return Snapshot(rows, ids, silences, dispatcher.contacts(conn, units))


def write_planned(conn: psycopg.Connection[Any], planned: Planned) -> None:
    """Write a plan, then log what it did."""
    alert_plan.write_plan(conn, planned.plan)
    for line in planned.logs:
        log.info(line.event, **line.fields)


def apply_transitions(
    conn: psycopg.Connection[Any],
    transitions: Sequence[Transition],
    registry: Registry,
    dispatcher: Dispatcher,
) -> Outcome:
    """Record each transition on its alert and queue notifications for its parties."""
    if not transitions:
        return Outcome()
    snap = read_snapshot(conn, transitions, registry, dispatcher)
    planned = plan_transitions(
        transitions, registry, snap, dispatcher.opts, dt.datetime.now(dt.UTC)
    )
    write_planned(conn, planned)
    return Outcome(planned.opened, planned.repeated, planned.cleared, planned.notifications)
