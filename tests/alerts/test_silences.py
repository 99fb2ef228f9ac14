"""What a silence does to an alert's notifications, on real PostgreSQL: who is told, when, how marked."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml

from alerts.escalation import run_escalations
from alerts.lifecycle import apply_transitions
from alerts.planner import DispatchOptions
from alerts.routing import RoutingFile
from alerts.silences import SilenceRequest, covers_critical, create_silence
from alerts.types import Receiver
from devices.catalog import DeviceType
from firesentry.embedded import Endpoints
from rules.engine import Transition
from rules.loader import load_rules
from store import registry as reg

RULES = load_rules(None)
ROUTING = RoutingFile.model_validate(
    yaml.safe_load("""
version: 1
group_wait_s: 0
routes:
  - name: critical
    match: {severity: [critical]}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager, control_room], channels: [sms]}
    repeat: {every_min: 5, max: 3}
  - name: major
    match: {severity: [major]}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager], channels: [sms]}
""")
)
MANAGER, CONTROL_ROOM = "+8613800000001", "+8613800000009"


@pytest.fixture()
def conn(db: Endpoints) -> Iterator[psycopg.Connection[Any]]:
    """Unit u1 (district D1) with a fire panel and a monitor, its manager and the control room."""
    with psycopg.connect(db.dsn(), autocommit=True) as c:
        reg.add_unit(c, "u1", "Riverside Mall", district="D1")
        reg.add_device(c, "utd-1", "u1", DeviceType.UTD)
        reg.add_device(c, "em-1", "u1", DeviceType.ELECTRICAL)
        reg.add_contact(c, "Wang Fang", "fire_safety_manager", unit_id="u1", phone=MANAGER)
        reg.add_contact(c, "D1 control room", "control_room", district="D1", phone=CONTROL_ROOM)
        yield c


@pytest.fixture()
def dispatcher() -> DispatchOptions:
    """Routing above and one control-room webhook."""
    return DispatchOptions(ROUTING, [Receiver("cr", "webhook")])


def _silence(conn: psycopg.Connection[Any], minutes: int = 60) -> int:
    req = SilenceRequest("panel maintenance", unit_id="u1", duration_min=minutes)
    return create_silence(conn, req, author="Admin Zhou", admin=True, rules=RULES).id


def _transition(
    conn: psycopg.Connection[Any],
    dispatcher: DispatchOptions,
    rule_id: str,
    device: str,
    opened: bool,
) -> None:
    registry = reg.load_registry(conn)
    rule = next(r for r in RULES.rules if r.id == rule_id)
    value = 420.0 if rule.metric else 1.0
    tr = Transition(rule, registry.by_id[device].num, int(time.time() * 1000), value, 300.0, opened)
    with conn.transaction():
        apply_transitions(conn, [tr], registry, dispatcher)


def _rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """(receiver, kind, silenced mark, English message) of every outbox row, in order."""
    return conn.execute(
        "SELECT receiver, kind, payload->'alert'->'silenced', payload->'alert'->'message'->>'en'"
        " FROM notifications ORDER BY id"
    ).fetchall()


def _escalate_now(conn: psycopg.Connection[Any], dispatcher: DispatchOptions) -> int:
    conn.execute("UPDATE alerts SET next_escalation_at = now() WHERE state = 'firing'")
    return run_escalations(conn, dispatcher)


def test_a_silenced_fire_alarm_and_its_reminders_reach_only_the_control_room(
    conn: psycopg.Connection[Any], dispatcher: DispatchOptions
) -> None:
    """Under a unit silence a fire alarm goes to the webhook and the control room's contact
    marked silenced (id and reason), reminders too, its clearing too; the manager hears none."""
    sid = _silence(conn)
    _transition(conn, dispatcher, "fire_alarm", "utd-1", opened=True)
    rows = _rows(conn)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("cr", "firing", True),
        (CONTROL_ROOM, "firing", True),
    ]
    assert all(r[3].startswith(f"[silenced #{sid}: panel maintenance] ") for r in rows)
    assert _escalate_now(conn, dispatcher) == 1
    assert [(r[0], r[1], r[2]) for r in _rows(conn)[2:]] == [(CONTROL_ROOM, "reminder", True)]
    _transition(conn, dispatcher, "fire_alarm", "utd-1", opened=False)
    assert [(r[0], r[1], r[2]) for r in _rows(conn)[3:]] == [
        ("cr", "resolved", True),
        (CONTROL_ROOM, "resolved", True),
    ]
    assert conn.execute(
        "SELECT count(*) FROM notifications WHERE receiver = %s", (MANAGER,)
    ).fetchone() == (0,)


def test_a_silenced_major_alert_reaches_nobody_until_its_silence_ends(
    conn: psycopg.Connection[Any], dispatcher: DispatchOptions
) -> None:
    """A major alert under a silence is told to nobody and looked at again when the silence
    ends; still firing then, it goes to the webhook and the manager, unmarked."""
    sid = _silence(conn, minutes=30)
    _transition(conn, dispatcher, "residual_current_high", "em-1", opened=True)
    assert _rows(conn) == []
    due, ends = conn.execute(
        "SELECT a.next_escalation_at, s.ends_at FROM alerts a JOIN silences s ON s.id = %s",
        (sid,),
    ).fetchone() or (None, None)
    assert due == ends
    assert _escalate_now(conn, dispatcher) == 0  # the silence still holds
    assert _rows(conn) == []
    conn.execute(
        "UPDATE silences SET starts_at = now() - interval '2 hours', ends_at = now() WHERE id = %s",
        (sid,),
    )
    assert _escalate_now(conn, dispatcher) == 2
    assert [(r[0], r[1], r[2]) for r in _rows(conn)] == [
        ("cr", "firing", False),
        (MANAGER, "firing", False),
    ]
    assert conn.execute("SELECT silenced_by FROM alerts").fetchone() == (None,)
    assert conn.execute(
        "SELECT comment FROM alert_events WHERE kind = 'unsilenced'"
    ).fetchone() == (f"silence {sid} ended",)


def test_which_scopes_cover_critical_alerts() -> None:
    """A unit, a device type with a critical rule, a critical rule cover critical alerts; a
    non-critical rule, or a device type without critical rules, does not."""
    assert covers_critical(RULES, None, None)
    assert covers_critical(RULES, "fire_alarm", None)
    assert covers_critical(RULES, "tank_level_critical", "water_level")
    assert covers_critical(RULES, None, DeviceType.UTD)
    assert covers_critical(RULES, None, DeviceType.ELECTRICAL)  # arc_fault
    assert not covers_critical(RULES, "residual_current_high", None)
    assert not covers_critical(RULES, None, DeviceType.WATER_PRESSURE)


def test_the_database_refuses_an_uncapped_silence(conn: psycopg.Connection[Any]) -> None:
    """A writer that bypasses the application still cannot store a silence past 90 days."""
    with pytest.raises(psycopg.errors.CheckViolation, match="silences_capped"):
        conn.execute(
            "INSERT INTO silences (unit_id, ends_at, author, reason) VALUES ('u1', %s, 'x', 'x')",
            (dt.datetime(9999, 12, 31, tzinfo=dt.UTC),),
        )
