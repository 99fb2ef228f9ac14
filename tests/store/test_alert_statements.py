"""Round trips of a batch's alert work, counted on the wire: a constant, whatever the batch holds."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import pq

from alerts.escalation import run_escalations
from alerts.lifecycle import apply_transitions
from alerts.planner import DispatchOptions
from alerts.routing import load_routing
from alerts.types import Receiver
from devices.catalog import DeviceType
from firesentry.embedded import Endpoints
from rules.engine import Transition
from rules.loader import load_rules
from store import registry as reg

RULES = load_rules(None)
RULE = next(r for r in RULES.rules if r.id == "residual_current_high")
# A statement bound that holds for any batch: four snapshot queries, four writes, one NOTIFY.
MAX_STATEMENTS = 9


@contextmanager
def statements(conn: psycopg.Connection[Any]) -> Iterator[list[int]]:
    """Count the statements the client sends (libpq's protocol trace: Query or Execute)."""
    counted: list[int] = []
    with tempfile.TemporaryFile("w+") as f:
        conn.pgconn.trace(f.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield counted
        finally:
            conn.pgconn.untrace()
            f.seek(0)
            lines = [ln.split("\t") for ln in f.read().splitlines()]
            counted.append(
                sum(1 for p in lines if len(p) > 2 and p[0] == "F" and p[2] in ("Query", "Execute"))
            )


def _fleet(conn: psycopg.Connection[Any], units: int, per_unit: int) -> None:
    for u in range(units):
        reg.add_unit(conn, f"u{u}", f"Unit {u}", district="D1")
        for d in range(per_unit):
            reg.add_device(conn, f"em-{u}-{d}", f"u{u}", DeviceType.ELECTRICAL)
        for k, role in enumerate(("fire_safety_manager", "property_manager", "grid_worker")):
            reg.add_contact(
                conn, f"{role} {u}", role, unit_id=f"u{u}", phone=f"+86138{u:04d}{k:04d}"
            )


def _open_all(
    conn: psycopg.Connection[Any], dispatcher: DispatchOptions, opened: bool
) -> tuple[int, Any]:
    registry = reg.load_registry(conn)
    now = int(time.time() * 1000)
    trs = [
        Transition(RULE, d.num, now, 420.0 if opened else 10.0, 300.0, opened)
        for d in registry.by_num.values()
    ]
    with conn.transaction(), statements(conn) as n:
        out = apply_transitions(conn, trs, registry, dispatcher)
    return n[0], out


@pytest.fixture()
def dispatcher() -> DispatchOptions:
    """The shipped routing (major: the manager at once, then up the chain) and two webhooks."""
    return DispatchOptions(
        load_routing(None), [Receiver("cr", "webhook"), Receiver("ops", "webhook")]
    )


@pytest.mark.parametrize(("units", "per_unit"), [(1, 1), (50, 4)])
def test_opening_alerts_takes_a_constant_number_of_statements(
    db: Endpoints, dispatcher: DispatchOptions, units: int, per_unit: int
) -> None:
    """Opening 1 alert or 200 alerts for 50 units of 3 contacts each takes the same few
    statements, clearing them too, and every alert, history line and notification is written."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        _fleet(conn, units, per_unit)
        n_open, out = _open_all(conn, dispatcher, True)
        alerts = units * per_unit
        assert (out.opened, out.notifications) == (alerts, alerts * 2 + alerts)
        n_clear, out = _open_all(conn, dispatcher, False)
        assert out.cleared == alerts
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM alerts WHERE state = 'resolved'),"
            " (SELECT count(*) FROM alert_events),"
            " (SELECT count(*) FROM notifications WHERE kind = 'firing' AND channel = 'sms')"
        ).fetchone()
        conn.execute("UPDATE alerts SET state = 'firing', next_escalation_at = now()")
        escalated, n_escalate = 0, 0
        while True:  # a pass takes at most 100 due alerts
            with conn.transaction(), statements(conn) as n:
                step = run_escalations(conn, dispatcher)
            n_escalate = max(n_escalate, n[0])
            if not step:
                break
            escalated += step
    # The manager is told each firing alert once (by SMS: the fleet's contacts have no e-mail).
    assert counts == (alerts, 2 * alerts, alerts)
    assert escalated == alerts  # tier 1 (the property manager) of every alert
    print(f"statements: open {n_open}, clear {n_clear}, escalate {n_escalate} ({alerts} alerts)")
    assert max(n_open, n_clear, n_escalate) <= MAX_STATEMENTS
