"""Escalation and reminders: alerts nobody acknowledged move to the next tier of parties."""

from __future__ import annotations

from typing import Any

import psycopg

from alerts.dispatch import Dispatcher
from store import alerts as store_alerts


def run_escalations(conn: psycopg.Connection[Any], dispatcher: Dispatcher) -> int:
    """Escalate every alert that is due, in one transaction; return notifications queued."""
    n = 0
    with conn.transaction():
        for alert_id in store_alerts.due_escalations(conn):
            alert = store_alerts.get_alert(conn, alert_id)
            if alert is not None:
                n += dispatcher.escalate(conn, alert)
        if n:
            conn.execute("SELECT pg_notify('firesentry_outbox', '')")
    return n
