"""Delivery receipts: kept as providers sent them, then applied to the notifications they
name by the outbox worker (see alerts/notify/receipts.py for the formats)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from store import channels


class ReceiptIn(Protocol):
    """One receipt as a provider sent it (key: the notification's idempotency key, a UUID)."""

    @property
    def key(self) -> str: ...
    @property
    def delivered(self) -> bool: ...
    @property
    def status(self) -> str: ...
    @property
    def error(self) -> str: ...


def record(conn: psycopg.Connection[Any], provider: str, receipts: Sequence[ReceiptIn]) -> None:
    """Keep receipts for the outbox worker to apply, and wake it."""
    if not receipts:
        return
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO delivery_receipts (provider, idempotency_key, delivered, status,"
                " error) VALUES (%s, %s::uuid, %s, %s, %s)",
                [(provider, r.key, r.delivered, r.status[:100], r.error[:500]) for r in receipts],
            )
        channels.notify_outbox(conn)


@dataclass(frozen=True, slots=True)
class Pending:
    """A receipt not applied yet, and the notification it names (None: not one of ours)."""

    id: int
    provider: str
    delivered: bool
    status: str
    error: str
    notification_id: int | None
    state: str | None
    attempts: int
    created_at: dt.datetime | None
    severity: str
    alert_open: bool


_PENDING = """
SELECT r.id, r.provider, r.delivered, r.status, r.error, n.id, n.state, coalesce(n.attempts, 0),
       n.created_at, coalesce(n.payload->'alert'->>'severity', 'info'),
       coalesce((SELECT a.state <> 'closed' AND a.acknowledged_at IS NULL FROM alerts a
                 WHERE a.id = n.alert_id), true)
FROM delivery_receipts r
LEFT JOIN notifications n ON n.idempotency_key = r.idempotency_key
WHERE r.applied_at IS NULL
ORDER BY r.id
LIMIT %s
FOR UPDATE OF r SKIP LOCKED
"""


async def pending(conn: psycopg.AsyncConnection[Any], limit: int = 500) -> list[Pending]:
    """Receipts not applied yet, oldest first (locked until the transaction ends)."""
    cur = await conn.execute(_PENDING, (limit,))
    return [
        Pending(
            int(r[0]), r[1], bool(r[2]), r[3], r[4], r[5], r[6], int(r[7]), r[8], r[9], bool(r[10])
        )
        for r in await cur.fetchall()
    ]


async def delivered(conn: psycopg.AsyncConnection[Any], notification_id: int, status: str) -> None:
    """The provider says the message reached the phone: it and the rows it carried are
    delivered, whatever they were waiting for (a retry after a timeout need not be sent)."""
    await conn.execute(
        "UPDATE notifications SET state = 'delivered', delivered_at = now(),"
        " sent_at = coalesce(sent_at, now()), receipt = %s, first_failed_at = NULL,"
        " lease_until = NULL WHERE (id = %s OR delivered_with = %s) AND state <> 'sending'",
        (status, notification_id, notification_id),
    )


async def undelivered(
    conn: psycopg.AsyncConnection[Any],
    notification_id: int,
    state: str,
    error: str,
    retry_in_s: float,
) -> None:
    """The provider says a sent message did not arrive: failed (retried after retry_in_s) or
    given up, with the receipt as the error."""
    await conn.execute(
        "UPDATE notifications SET state = %s, receipt = %s, last_error = %s,"
        " first_failed_at = coalesce(first_failed_at, now()), failed_over_at = NULL,"
        " next_attempt_at = now() + make_interval(secs => %s)"
        " WHERE (id = %s OR delivered_with = %s) AND state = 'sent'",
        (state, error[:100], error[:500], retry_in_s, notification_id, notification_id),
    )


async def applied(
    conn: psycopg.AsyncConnection[Any], ids: Sequence[int], notifications: Sequence[int | None]
) -> None:
    """Mark receipts as applied, each with the notification it named (None: unknown key)."""
    await conn.execute(
        "UPDATE delivery_receipts r SET applied_at = now(), notification_id = v.n"
        " FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, n) WHERE r.id = v.id",
        (list(ids), list(notifications)),
    )
