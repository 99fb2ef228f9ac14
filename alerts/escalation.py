"""Escalation and reminders: alerts nobody acknowledged move to the next tier of parties."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from alerts.lifecycle import snapshot_of, write_planned
from alerts.planner import DispatchOptions, plan_escalations
from store import alert_plan


def run_escalations(conn: psycopg.Connection[Any], opts: DispatchOptions) -> int:
    """Escalate every alert that is due, in one transaction; return notifications queued."""
    with conn.transaction():
        rows = alert_plan.due_alerts(conn)
        if not rows:
            return 0
        snap = snapshot_of(conn, {(r.device_num, r.rule_id, r.point_key): r for r in rows}, ())
        planned = plan_escalations(rows, snap, opts, dt.datetime.now(dt.UTC))
        write_planned(conn, planned)
    return planned.notifications
