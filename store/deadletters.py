"""Queries over rejected_messages (dead letters): recent ones and counts per reason."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected message."""

    id: int
    received_at: dt.datetime
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes


def recent(
    conn: psycopg.Connection[Any],
    *,
    reason: str | None = None,
    device_id: str | None = None,
    limit: int = 50,
) -> list[DeadLetter]:
    """The newest dead letters, optionally of one reason or device."""
    rows = conn.execute(
        "SELECT id, received_at, topic, device_id, reason, detail, payload FROM rejected_messages"
        " WHERE (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(device)s::text IS NULL OR device_id = %(device)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"reason": reason, "device": device_id, "limit": limit},
    ).fetchall()
    return [DeadLetter(int(r[0]), r[1], r[2], r[3], r[4], r[5], bytes(r[6])) for r in rows]


def stats(
    conn: psycopg.Connection[Any], since: dt.datetime
) -> list[tuple[str, int, int, dt.datetime]]:
    """(reason, messages, devices, last seen) per reason since a time, most frequent first."""
    rows = conn.execute(
        "SELECT reason, count(*), count(DISTINCT device_id), max(received_at)"
        " FROM rejected_messages WHERE received_at >= %s GROUP BY reason ORDER BY 2 DESC",
        (since,),
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2]), r[3]) for r in rows]
