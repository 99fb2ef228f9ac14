"""Failover rows: a contact's notifications that keep failing, and their hand-over to another
channel of the same person (see alerts/failover.py for the decisions)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg


@dataclass(frozen=True, slots=True)
class Stuck:
    """A contact's notification that keeps failing (or was refused), with what failover needs."""

    id: int
    root: int  # the chain's first row
    alert_id: int | None
    channel: str
    kind: str
    payload: dict[str, Any]
    locale: str
    error: str
    first_failed_at: dt.datetime | None
    contact_id: int
    contact_name: str
    role: str
    phone: str | None
    email: str | None
    contact_channels: tuple[str, ...]
    tried: frozenset[str]  # channels the person has (had) this notice on: chain and route
    reached: bool  # one of those rows was sent: the person has been told
    unit_id: str

    @property
    def severity(self) -> str:
        """The severity of the alert the notification is about."""
        return str(self.payload.get("alert", {}).get("severity", "info"))

    def address(self, channel: str) -> str | None:
        """The contact's address on a person channel."""
        return {"sms": self.phone, "email": self.email}.get(channel)


# A contact's row that has failed for long enough, or was refused, not handed on yet, whose
# alert still waits for someone (open and unacknowledged). Locked: two workers never both
# hand the same row on.
_STUCK = """
SELECT n.id, coalesce(n.failover_of, n.id), n.alert_id, n.channel, n.kind, n.payload,
       n.locale, coalesce(n.last_error, ''), n.first_failed_at, c.id, c.name, c.role,
       c.phone, c.email, c.channels, k.channels, k.reached,
       coalesce(a.unit_id, n.payload->'alert'->>'unit_id', '')
FROM notifications n
JOIN contacts c ON c.id = n.contact_id
LEFT JOIN alerts a ON a.id = n.alert_id
CROSS JOIN LATERAL (
    -- What this person already has of this notice: its failover chain, and the rows the
    -- route itself sent them on other channels (a tier with sms and email).
    SELECT coalesce(array_agg(DISTINCT m.channel), '{}') AS channels,
           coalesce(bool_or(m.state IN ('sent', 'delivered')), false) AS reached
    FROM notifications m
    WHERE m.id = coalesce(n.failover_of, n.id) OR m.failover_of = coalesce(n.failover_of, n.id)
       OR (n.alert_id IS NOT NULL AND m.alert_id = n.alert_id AND m.contact_id = n.contact_id
           AND m.kind = n.kind)
) k
WHERE n.contact_id IS NOT NULL AND n.failed_over_at IS NULL
  AND (n.state = 'given_up'
       OR (n.state = 'failed' AND n.first_failed_at <= now() - make_interval(secs => %(after)s)))
  AND (a.id IS NULL OR (a.state <> 'closed' AND a.acknowledged_at IS NULL))
ORDER BY n.id
LIMIT %(limit)s
FOR UPDATE OF n SKIP LOCKED
"""


async def stuck(
    conn: psycopg.AsyncConnection[Any], *, after_s: float, limit: int = 200
) -> list[Stuck]:
    """Contacts' notifications failing for after_s or refused, not handed on yet (locked)."""
    cur = await conn.execute(_STUCK, {"after": after_s, "limit": limit})
    return [
        Stuck(
            id=int(r[0]),
            root=int(r[1]),
            alert_id=r[2],
            channel=r[3],
            kind=r[4],
            payload=r[5],
            locale=r[6],
            error=r[7],
            first_failed_at=r[8],
            contact_id=int(r[9]),
            contact_name=r[10],
            role=r[11],
            phone=r[12],
            email=r[13],
            contact_channels=tuple(r[14] or ()),
            tried=frozenset(r[15]),
            reached=bool(r[16]),
            unit_id=r[17],
        )
        for r in await cur.fetchall()
    ]


async def hand_over(
    conn: psycopg.AsyncConnection[Any], row: Stuck, channel: str, address: str
) -> int:
    """Queue the row's notification on another channel of its contact, due now; return its id."""
    cur = await conn.execute(
        "INSERT INTO notifications (alert_id, channel, receiver, payload, kind, contact_id,"
        " locale, group_key, failover_of) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (
            row.alert_id,
            channel,
            address,
            msgspec.json.encode(row.payload).decode(),
            row.kind,
            row.contact_id,
            row.locale,
            f"{channel}:{address}:{row.unit_id}",
            row.root,
        ),
    )
    new = await cur.fetchone()
    assert new is not None  # INSERT … RETURNING returns the row
    await settle(conn, [row.id])
    return int(new[0])


async def settle(conn: psycopg.AsyncConnection[Any], ids: Sequence[int]) -> None:
    """Mark rows as handed on (or as told to the control room): failover leaves them be."""
    await conn.execute(
        "UPDATE notifications SET failed_over_at = now() WHERE id = ANY(%s)", (list(ids),)
    )
