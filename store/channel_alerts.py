"""Channel alerts: notification channels that have kept failing, opened and cleared by the
outbox worker, and the control-room addresses that hear of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg

# A provider failing (SMS, e-mail) fails every address: such channels are one subject.
_SUBJECT = "CASE WHEN channel IN ('sms', 'email') THEN channel ELSE channel || ':' || receiver END"


@dataclass(frozen=True, slots=True)
class Failing:
    """A channel with notifications waiting after failures."""

    subject: str
    since: dt.datetime
    waiting: int
    last_error: str


@dataclass(frozen=True, slots=True)
class ChannelAlert:
    """An open channel alert."""

    id: int
    subject: str
    failing_since: dt.datetime
    waiting: int


async def failing(conn: psycopg.AsyncConnection[Any]) -> list[Failing]:
    """Every subject with failed notifications waiting for a retry, failing since when."""
    cur = await conn.execute(
        f"SELECT {_SUBJECT}, min(first_failed_at), count(*),"  # noqa: S608
        " (array_agg(coalesce(last_error, '') ORDER BY id DESC))[1]"
        " FROM notifications WHERE state = 'failed' AND first_failed_at IS NOT NULL"
        " GROUP BY 1 ORDER BY 1"
    )
    return [Failing(r[0], r[1], int(r[2]), r[3]) for r in await cur.fetchall()]


async def open_alerts(conn: psycopg.AsyncConnection[Any]) -> list[ChannelAlert]:
    """The channel alerts not cleared yet."""
    cur = await conn.execute(
        "SELECT id, subject, failing_since, waiting FROM channel_alerts"
        " WHERE cleared_at IS NULL ORDER BY id"
    )
    return [ChannelAlert(int(r[0]), r[1], r[2], int(r[3])) for r in await cur.fetchall()]


async def open_alert(conn: psycopg.AsyncConnection[Any], f: Failing) -> int | None:
    """Open an alert for a failing subject; None when one is open already."""
    cur = await conn.execute(
        "INSERT INTO channel_alerts (subject, failing_since, waiting, last_error)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (subject) WHERE cleared_at IS NULL DO NOTHING"
        " RETURNING id",
        (f.subject, f.since, f.waiting, f.last_error[:500]),
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def update_waiting(conn: psycopg.AsyncConnection[Any], alert_id: int, f: Failing) -> None:
    """Keep an open alert's count of waiting messages and last error current."""
    await conn.execute(
        "UPDATE channel_alerts SET waiting = %s, last_error = %s WHERE id = %s",
        (f.waiting, f.last_error[:500], alert_id),
    )


async def clear(conn: psycopg.AsyncConnection[Any], alert_id: int) -> None:
    """The channel delivers again: clear its alert."""
    await conn.execute(
        "UPDATE channel_alerts SET cleared_at = now(), waiting = 0 WHERE id = %s", (alert_id,)
    )


@dataclass(frozen=True, slots=True)
class Address:
    """Where the control room hears of a channel alert."""

    channel: str
    receiver: str
    contact_id: int | None = None
    locale: str = "zh-CN"


async def control_room_contacts(conn: psycopg.AsyncConnection[Any]) -> list[Address]:
    """Phones and e-mail addresses of every control-room contact (by their channels)."""
    cur = await conn.execute(
        "SELECT id, phone, email, locale, channels FROM contacts WHERE role = 'control_room'"
        " ORDER BY id"
    )
    out: list[Address] = []
    for cid, phone, email, locale, channels in await cur.fetchall():
        for channel, address in (("sms", phone), ("email", email)):
            if address and (not channels or channel in channels):
                out.append(Address(channel, address, int(cid), locale))
    return out


async def queue(
    conn: psycopg.AsyncConnection[Any],
    addresses: Sequence[Address],
    payload: dict[str, Any],
    kind: str,
) -> None:
    """Queue a channel alert's notice to each address, due now."""
    body = msgspec.json.encode(payload).decode()
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO notifications (alert_id, channel, receiver, payload, kind, contact_id,"
            " locale) VALUES (NULL, %s, %s, %s::jsonb, %s, %s, %s)",
            [(a.channel, a.receiver, body, kind, a.contact_id, a.locale) for a in addresses],
        )
