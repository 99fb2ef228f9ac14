"""Turn rule transitions into alert rows, history lines and outbox rows, in the caller's transaction.

Read a snapshot (a constant number of queries), plan in memory (alerts.planner), write the
plan (a constant number of statements): the batch's cost in round trips does not grow with
the number of alerts it opens or the parties they reach.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import structlog

from alerts.planner import (
    DispatchOptions,
    Key,
    Planned,
    Snapshot,
    fire_alarm_units,
    keys_of,
    new_alerts_needed,
    plan_transitions,
)
from devices.registry import Registry
from rules.transitions import Transition
from store import alert_plan
from store import silences as store_silences
from store.alerts import AlertView

log = structlog.get_logger("alerts")


@dataclass(slots=True)
class Outcome:
    """What applying a batch of transitions did."""

    opened: int = 0
    repeated: int = 0
    cleared: int = 0
    notifications: int = 0


def snapshot_of(
    conn: psycopg.Connection[Any],
    rows: dict[Key, AlertView],
    new_ids: Sequence[int],
    targets: Iterable[tuple[str, str, str]] = (),
) -> Snapshot:
    """The silences and contacts that planning for these alerts, and for alerts still to open
    at these (unit, device, rule) targets, needs: two queries."""
    every = {*targets, *((r.unit_id, r.device_id, r.rule_id) for r in rows.values())}
    units = {unit for unit, _, _ in every}
    silences = store_silences.active_or_named(
        conn,
        units,
        {device for _, device, _ in every},
        {rule for _, _, rule in every},
        {r.silenced_by for r in rows.values() if r.silenced_by is not None},
    )
    return Snapshot(rows, new_ids, silences, alert_plan.contacts_of_units(conn, units))


def read_snapshot(
    conn: psycopg.Connection[Any], transitions: Sequence[Transition], registry: Registry
) -> Snapshot:
    """What planning these transitions needs, in at most four queries (five when the batch
    has fire alarms: their units' open fire alarms are counted)."""
    keys = keys_of(transitions, registry)
    rows = alert_plan.open_alerts(conn, keys)
    ids = alert_plan.reserve_ids(conn, new_alerts_needed(transitions, registry, set(rows)))
    devices = ((registry.by_num[num], rule) for num, rule in keys)
    snap = snapshot_of(conn, rows, ids, ((d.unit_id, d.id, rule) for d, rule in devices))
    fire_units = fire_alarm_units(transitions, registry)
    if fire_units:
        snap = replace(snap, unit_fire_alarms=alert_plan.open_fire_alarms(conn, fire_units))
    return snap


def write_planned(conn: psycopg.Connection[Any], planned: Planned) -> None:
    """Write a plan, then log what it did."""
    alert_plan.write_plan(conn, planned.plan)
    for line in planned.logs:
        log.info(line.event, **line.fields)


def apply_transitions(
    conn: psycopg.Connection[Any],
    transitions: Sequence[Transition],
    registry: Registry,
    opts: DispatchOptions,
) -> Outcome:
    """Record each transition on its alert and queue notifications for its parties."""
    if not transitions:
        return Outcome()
    snap = read_snapshot(conn, transitions, registry)
    planned = plan_transitions(transitions, registry, snap, opts, dt.datetime.now(dt.UTC))
    write_planned(conn, planned)
    return Outcome(planned.opened, planned.repeated, planned.cleared, planned.notifications)
