"""A unit's recent device events (fire alarms, faults, supervisory, shield, start, feedback …)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class UnitEvent:
    """One stored event of a device of the unit; kind is the id of devices.catalog.EventKind."""

    ts: dt.datetime
    device_id: str
    device_location: str
    seq: int
    kind: int
    loop: int | None
    point: int | None
    text: str


def recent_events(
    conn: psycopg.Connection[Any],
    unit_id: str,
    since: dt.datetime,
    *,
    kinds: list[int] | None = None,
    limit: int = 200,
) -> list[UnitEvent]:
    """The unit's events since `since`, newest first, at most `limit` (optionally some kinds)."""
    rows = conn.execute(
        "SELECT e.ts, d.id, d.location, e.seq, e.kind, e.loop_no, e.point_no, e.text"
        " FROM events e JOIN devices d ON d.num = e.device_num"
        " WHERE d.unit_id = %s AND e.ts >= %s AND (%s::smallint[] IS NULL OR e.kind = ANY(%s))"
        " ORDER BY e.ts DESC, e.seq DESC LIMIT %s",
        (unit_id, since, kinds, kinds, limit),
    ).fetchall()
    return [UnitEvent(*r) for r in rows]
