"""Forwarding fires to 119: queue a forwarding, and find fire alarms left unverified too long."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg

from store.alerts import _ALERT_VIEW, AlertView
from store.channels import notify_outbox
from store.outbox import FIRE_119


def queue(
    conn: psycopg.Connection[Any], alert_id: int, receiver: str, payload: dict[str, Any]
) -> int:
    """Queue a forwarding of the alert to the 119 receiver, due now, and wake the outbox when
    the caller's transaction commits; return the notification's id."""
    row = conn.execute(
        "INSERT INTO notifications (alert_id, channel, receiver, payload, kind)"
        " VALUES (%s, %s, %s, %s::jsonb, %s) RETURNING id",
        (alert_id, FIRE_119, receiver, msgspec.json.encode(payload).decode(), FIRE_119),
    ).fetchone()
    assert row is not None
    notify_outbox(conn)
    return int(row[0])


@dataclass(frozen=True, slots=True)
class UnitPlace:
    """Where a unit is, for the fire engines: its category, grid and map position."""

    category: str
    grid: str
    lat: float | None
    lon: float | None


def place(conn: psycopg.Connection[Any], unit_id: str) -> UnitPlace:
    """The unit's category, grid and position (every alert has a unit)."""
    row = conn.execute(
        "SELECT category, grid, lat, lon FROM units WHERE id = %s", (unit_id,)
    ).fetchone()
    assert row is not None
    return UnitPlace(*row)


def forwarded(conn: psycopg.Connection[Any], alert_id: int, verification: str) -> bool:
    """Whether a forwarding of the alert with this verification was queued already."""
    row = conn.execute(
        "SELECT 1 FROM notifications WHERE alert_id = %s AND channel = %s"
        " AND payload->>'verification' = %s LIMIT 1",
        (alert_id, FIRE_119, verification),
    ).fetchone()
    return row is not None


_UNVERIFIED = (
    "WITH due AS (UPDATE alerts SET unverified_escalated_at = now() WHERE id IN ("  # noqa: S608
    " SELECT id FROM alerts WHERE needs_verification AND verification IS NULL"
    " AND unverified_escalated_at IS NULL AND state <> 'closed'"
    " AND opened_at <= now() - make_interval(secs => %s)"
    " ORDER BY opened_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id)"
    f"{_ALERT_VIEW} WHERE a.id IN (SELECT id FROM due) ORDER BY a.opened_at"
)


def take_unverified(
    conn: psycopg.Connection[Any], within_s: float, limit: int = 100
) -> list[AlertView]:
    """Open fire alarms nobody verified within `within_s` of opening and not yet escalated for
    it, marked as escalated now (in the caller's transaction; others' locks skipped)."""
    return [AlertView(*r) for r in conn.execute(_UNVERIFIED, (within_s, limit)).fetchall()]
