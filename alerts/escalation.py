"""Escalation and reminders: alerts nobody acknowledged move to the next tier of parties."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from alerts.dispatch import Dispatcher
from alerts.lifecycle import write_planned
from alerts.planner import Snapshot, plan_escalations
from store import alert_plan
from store import silences as store_silences


def run_escalations(conn: psycopg.Connection[Any], dispatcher: Dispatcher) -> int:
    """Escalate every alert that is due, in one transaction; return notifications queued."""
    with conn.transaction():
        rows = alert_plan.due_alerts(conn)
        if not rows:
            return 0
        silences = store_silences.active_or_named(
            conn,
            {r.unit_id for r in rows},
            {r.device_id for r in rows},
            {r.rule_id for r in rows},
            {r.silenced_by for r in rows if r.silenced_by is not None},
        )
        contacts = dispatcher.contacts(conn, {r.unit_id for r in rows})
        snap = Snapshot({(r.device_num, r.rule_id): r for r in rows}, (), silences, contacts)
        planned = plan_escalations(rows, snap, dispatcher.opts, dt.datetime.now(dt.UTC))
        write_planned(conn, planned)
    return planned.notifications
