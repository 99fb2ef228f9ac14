"""Alert rows as operators and notifications see them, their history, contacts and outbox rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg


def record_event(
    conn: psycopg.Connection[Any],
    alert_id: int,
    kind: str,
    *,
    actor: str = "engine",
    value: float | None = None,
    comment: str = "",
) -> None:
    """Append a line to the alert's history."""
    conn.execute(
        "INSERT INTO alert_events (alert_id, kind, actor, value, comment) VALUES (%s, %s, %s, %s, %s)",
        (alert_id, kind, actor, value, comment),
    )


def open_breaches(conn: psycopg.Connection[Any]) -> list[tuple[str, int, dt.datetime]]:
    """Return (rule_id, device_num, last_seen_at) of alerts whose condition still holds."""
    rows = conn.execute(
        "SELECT rule_id, device_num, last_seen_at FROM alerts"
        " WHERE state IN ('firing', 'acknowledged') AND cleared_at IS NULL"
    ).fetchall()
    return [(str(r[0]), int(r[1]), r[2]) for r in rows]


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A party that can be told of an alert at a unit."""

    id: int
    name: str
    role: str
    phone: str | None
    email: str | None
    locale: str
    channels: tuple[str, ...]
    quiet_start: dt.time | None
    quiet_end: dt.time | None


_ALERT_VIEW = """
SELECT a.id, a.device_num, a.unit_id, a.rule_id, a.severity, a.state, a.metric, a.threshold,
       a.first_value, a.last_value, a.opened_at, a.last_seen_at, a.count, a.cleared_at,
       a.message_en, a.message_zh, a.needs_verification, a.route, a.escalation_tier,
       a.reminders_sent, a.silenced_by, a.next_escalation_at, a.point_key, a.loop, a.point,
       a.point_text, d.id, d.type, u.name, u.district, d.location, u.address,
       a.acknowledged_at, a.closed_at, a.verification, a.false_alarm_cause, a.verified_at,
       a.verified_by
FROM alerts a JOIN devices d ON d.num = a.device_num JOIN units u ON u.id = a.unit_id
"""


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert row with its device's id and type and its unit's name and district: what the
    planner reads and changes, and what notifications, escalation and operators see."""

    id: int
    device_num: int
    unit_id: str
    rule_id: str
    severity: str
    state: str
    metric: str | None
    threshold: float | None
    first_value: float | None
    value: float | None  # the column last_value
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    count: int
    cleared_at: dt.datetime | None
    message_en: str
    message_zh: str
    needs_verification: bool
    route: str | None
    escalation_tier: int
    reminders_sent: int
    silenced_by: int | None
    next_escalation_at: dt.datetime | None
    # Which detector of a panel alarms ('<loop>-<point>'; '' for the whole device) and the
    # panel's own words for it ("3F east corridor smoke detector").
    point_key: str
    loop: int | None
    point: int | None
    point_text: str
    # Read only: the planner never changes these (joined, or set by operators).
    device_id: str
    device_type: str
    unit_name: str
    district: str
    device_location: str
    unit_address: str
    acknowledged_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    verification: str | None = None
    false_alarm_cause: str | None = None
    verified_at: dt.datetime | None = None
    verified_by: str | None = None


def get_alert(conn: psycopg.Connection[Any], alert_id: int) -> AlertView | None:
    """One alert with its device and unit, or None."""
    row = conn.execute(_ALERT_VIEW + " WHERE a.id = %s", (alert_id,)).fetchone()
    return None if row is None else AlertView(*row)


def list_alerts(
    conn: psycopg.Connection[Any],
    *,
    states: list[str] | None = None,
    unit_id: str | None = None,
    severity: str | None = None,
    limit: int = 100,
) -> list[AlertView]:
    """Alerts, newest first; `open` means not closed, including cleared but unacknowledged ones."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if states:
        where.append("a.state = ANY(%s)")
        params.append(states)
    if unit_id:
        where.append("a.unit_id = %s")
        params.append(unit_id)
    if severity:
        where.append("a.severity = %s")
        params.append(severity)
    params.append(limit)
    rows = conn.execute(
        _ALERT_VIEW + " WHERE " + " AND ".join(where) + " ORDER BY a.opened_at DESC LIMIT %s",
        params,
    ).fetchall()
    return [AlertView(*r) for r in rows]
