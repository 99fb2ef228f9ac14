"""Alert rows: open or repeat (one open alert per device and rule), clear, and their history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class AlertOpen:
    """A breach to record against the open alert of (device, rule)."""

    device_num: int
    unit_id: str
    rule_id: str
    severity: str
    metric: str | None
    threshold: float | None
    value: float | None
    at: dt.datetime
    message_en: str
    message_zh: str
    needs_verification: bool = False


@dataclass(frozen=True, slots=True)
class AlertRow:
    """The alert after a change, and its state before it (None: newly opened)."""

    id: int
    state: str
    previous_state: str | None
    count: int


_OPEN = """
WITH prev AS (
    SELECT id, state FROM alerts
    WHERE device_num = %(device_num)s AND rule_id = %(rule_id)s AND state <> 'closed'
    FOR UPDATE
)
INSERT INTO alerts AS a (device_num, unit_id, rule_id, severity, metric, threshold,
                         first_value, last_value, opened_at, last_seen_at, message_en, message_zh,
                         needs_verification)
VALUES (%(device_num)s, %(unit_id)s, %(rule_id)s, %(severity)s, %(metric)s, %(threshold)s,
        %(value)s, %(value)s, %(at)s, %(at)s, %(message_en)s, %(message_zh)s,
        %(needs_verification)s)
ON CONFLICT (device_num, rule_id) WHERE state <> 'closed' DO UPDATE SET
    last_value = EXCLUDED.last_value,
    last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
    count = a.count + 1,
    -- A resolved alert that breaches again fires again; an acknowledged one stays acknowledged.
    state = CASE WHEN a.state = 'resolved' THEN 'firing' ELSE a.state END,
    cleared_at = NULL,
    updated_at = now()
RETURNING a.id, a.state, (SELECT state FROM prev), a.count
"""

_CLEAR = """
UPDATE alerts SET state = 'resolved', cleared_at = %(at)s, last_value = %(value)s,
                  next_escalation_at = NULL, updated_at = now()
WHERE device_num = %(device_num)s AND rule_id = %(rule_id)s
  AND state IN ('firing', 'acknowledged')
RETURNING id, state, count
"""


def open_or_repeat(conn: psycopg.Connection[Any], a: AlertOpen) -> AlertRow:
    """Open the alert of (device, rule), or count a repeat on the open one."""
    params = {
        "device_num": a.device_num,
        "unit_id": a.unit_id,
        "rule_id": a.rule_id,
        "severity": a.severity,
        "metric": a.metric,
        "threshold": a.threshold,
        "value": a.value,
        "at": a.at,
        "message_en": a.message_en,
        "message_zh": a.message_zh,
        "needs_verification": a.needs_verification,
    }
    row = conn.execute(_OPEN, params).fetchone()
    assert row is not None
    return AlertRow(int(row[0]), str(row[1]), row[2], int(row[3]))


def clear(
    conn: psycopg.Connection[Any], device_num: int, rule_id: str, at: dt.datetime, value: float
) -> AlertRow | None:
    """Mark the open alert of (device, rule) as resolved; None when there was none."""
    row = conn.execute(
        _CLEAR, {"device_num": device_num, "rule_id": rule_id, "at": at, "value": value}
    ).fetchone()
    if row is None:
        return None
    return AlertRow(int(row[0]), str(row[1]), "firing", int(row[2]))


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


def contacts_for_unit(conn: psycopg.Connection[Any], unit_id: str) -> list[ContactRow]:
    """Contacts of the unit and of its district (supervisors and control rooms cover many units)."""
    rows = conn.execute(
        "SELECT c.id, c.name, c.role, c.phone, c.email, c.locale, c.channels, c.quiet_start,"
        " c.quiet_end FROM contacts c JOIN units u ON u.id = %s"
        " WHERE c.unit_id = u.id OR (c.unit_id IS NULL AND c.district = u.district)"
        " ORDER BY c.id",
        (unit_id,),
    ).fetchall()
    return [
        ContactRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], tuple(r[6] or ()), r[7], r[8])
        for r in rows
    ]


def enqueue(
    conn: psycopg.Connection[Any],
    alert_id: int | None,
    channel: str,
    receiver: str,
    payload: dict[str, object],
    *,
    kind: str = "firing",
    contact_id: int | None = None,
    locale: str = "zh-CN",
    group_key: str | None = None,
    not_before: dt.datetime | None = None,
) -> str:
    """Write an outbox row addressed to a party in the caller's transaction; return its key."""
    row = conn.execute(
        "INSERT INTO notifications (alert_id, channel, receiver, payload, kind, contact_id, locale,"
        " group_key, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()))"
        " RETURNING idempotency_key",
        (
            alert_id,
            channel,
            receiver,
            Jsonb(payload),
            kind,
            contact_id,
            locale,
            group_key,
            not_before,
        ),
    ).fetchone()
    assert row is not None
    return str(row[0])


_ALERT_VIEW = """
SELECT a.id, a.rule_id, a.severity, d.id, d.type, a.unit_id, u.name, a.metric, a.last_value,
       a.threshold, a.opened_at, a.count, a.message_en, a.message_zh, a.state, a.route,
       a.escalation_tier, a.reminders_sent, u.district, a.needs_verification, a.silenced_by,
       a.acknowledged_at, a.cleared_at, a.closed_at, a.verification, a.false_alarm_cause
FROM alerts a JOIN devices d ON d.num = a.device_num JOIN units u ON u.id = a.unit_id
"""


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as notifications, escalation and operators see it."""

    id: int
    rule_id: str
    severity: str
    device_id: str
    device_type: str
    unit_id: str
    unit_name: str
    metric: str | None
    value: float | None
    threshold: float | None
    opened_at: dt.datetime
    count: int
    message_en: str
    message_zh: str
    state: str
    route: str | None
    escalation_tier: int
    reminders_sent: int
    district: str
    needs_verification: bool
    silenced_by: int | None
    acknowledged_at: dt.datetime | None
    cleared_at: dt.datetime | None
    closed_at: dt.datetime | None
    verification: str | None
    false_alarm_cause: str | None

    def as_payload(self) -> dict[str, object]:
        """The `alert` object of notification payloads."""
        return {
            "id": self.id,
            "rule_id": self.rule_id,
            "severity": self.severity,
            "device_id": self.device_id,
            "device_type": self.device_type,
            "unit_id": self.unit_id,
            "unit_name": self.unit_name,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "at": self.opened_at.isoformat(timespec="milliseconds"),
            "count": self.count,
            "state": self.state,
            "message": {"en": self.message_en, "zh-CN": self.message_zh},
        }


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


def due_escalations(conn: psycopg.Connection[Any], limit: int = 100) -> list[int]:
    """Ids of firing alerts whose next escalation or reminder is due (locked for this tx)."""
    rows = conn.execute(
        "SELECT id FROM alerts WHERE next_escalation_at <= now() AND state = 'firing'"
        " ORDER BY next_escalation_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    ).fetchall()
    return [int(r[0]) for r in rows]
