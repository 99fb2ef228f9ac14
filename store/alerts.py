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
                         first_value, last_value, opened_at, last_seen_at, message_en, message_zh)
VALUES (%(device_num)s, %(unit_id)s, %(rule_id)s, %(severity)s, %(metric)s, %(threshold)s,
        %(value)s, %(value)s, %(at)s, %(at)s, %(message_en)s, %(message_zh)s)
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
                  updated_at = now()
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


def enqueue_notification(
    conn: psycopg.Connection[Any],
    alert_id: int | None,
    channel: str,
    receiver: str,
    payload: dict[str, object],
) -> str:
    """Write an outbox row in the caller's transaction; return its idempotency key."""
    row = conn.execute(
        "INSERT INTO notifications (alert_id, channel, receiver, payload)"
        " VALUES (%s, %s, %s, %s) RETURNING idempotency_key",
        (alert_id, channel, receiver, Jsonb(payload)),
    ).fetchone()
    assert row is not None
    return str(row[0])


def open_breaches(conn: psycopg.Connection[Any]) -> list[tuple[str, int, dt.datetime]]:
    """Return (rule_id, device_num, last_seen_at) of alerts whose condition still holds."""
    rows = conn.execute(
        "SELECT rule_id, device_num, last_seen_at FROM alerts"
        " WHERE state IN ('firing', 'acknowledged') AND cleared_at IS NULL"
    ).fetchall()
    return [(str(r[0]), int(r[1]), r[2]) for r in rows]
