"""Notifications as operators see and handle them: list by state, resend the given-up ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

NOTIFICATION_STATES = (
    "pending",
    "sending",
    "sent",
    "delivered",
    "failed",
    "given_up",
    "cancelled",
)
# What an operator may resend: what will not be tried again by itself.
RETRYABLE_STATES = ("given_up", "cancelled")


@dataclass(frozen=True, slots=True)
class NotificationView:
    """One outbox row with its alert's severity and rule."""

    id: int
    created_at: dt.datetime
    alert_id: int | None
    severity: str | None
    rule_id: str | None
    channel: str
    receiver: str
    kind: str
    state: str
    attempts: int
    last_error: str | None
    sent_at: dt.datetime | None
    retried_by: str | None
    retried_at: dt.datetime | None


_SELECT = (
    "SELECT n.id, n.created_at, n.alert_id, n.payload->'alert'->>'severity',"
    " n.payload->'alert'->>'rule_id', n.channel, n.receiver, n.kind, n.state, n.attempts,"
    " n.last_error, n.sent_at, n.retried_by, n.retried_at FROM notifications n"
)


# A token limited to units sees the notifications of its units' alerts only.
_IN_UNITS = (
    " AND (%s::text[] IS NULL OR n.alert_id IN"
    " (SELECT a.id FROM alerts a WHERE a.unit_id = ANY(%s::text[])))"
)


def list_notifications(
    conn: psycopg.Connection[Any],
    *,
    states: Sequence[str] = (),
    since: dt.datetime | None = None,
    limit: int = 100,
    units: Sequence[str] | None = None,
) -> list[NotificationView]:
    """Notifications in these states (all when empty), queued since `since`, newest first;
    with `units`, only those of alerts at these units."""
    scope = None if units is None else list(units)
    rows = conn.execute(
        _SELECT + " WHERE (%s::text[] = '{}' OR n.state = ANY(%s::text[]))"
        " AND (%s::timestamptz IS NULL OR n.created_at >= %s::timestamptz)"
        + _IN_UNITS
        + " ORDER BY n.id DESC LIMIT %s",
        (list(states), list(states), since, since, scope, scope, limit),
    ).fetchall()
    return [NotificationView(*r) for r in rows]


def retry(
    conn: psycopg.Connection[Any],
    *,
    by: str,
    ids: Sequence[int] = (),
    given_up_since: dt.datetime | None = None,
    units: Sequence[str] | None = None,
) -> list[int]:
    """Queue given-up (or cancelled) notifications again, due now, their attempts counted from
    zero and who asked recorded; by id, or every given-up one queued since a time. Returns the
    ids queued; rows in other states are left alone."""
    if ids:
        where, params = "id = ANY(%s) AND state = ANY(%s)", [list(ids), list(RETRYABLE_STATES)]
    elif given_up_since is not None:
        where, params = "state = 'given_up' AND created_at >= %s", [given_up_since]
    else:
        return []
    if units is not None:
        where += " AND alert_id IN (SELECT a.id FROM alerts a WHERE a.unit_id = ANY(%s))"
        params.append(list(units))
    # The alert's history says who resent what, beside the engine's own lines.
    rows = conn.execute(
        "WITH r AS (UPDATE notifications SET state = 'pending', attempts = 0,"  # noqa: S608
        " next_attempt_at = now(), lease_until = NULL, retried_by = %s, retried_at = now(),"
        " last_error = 'retried by ' || %s || coalesce('; before: ' || last_error, '')"
        f" WHERE {where} RETURNING id, alert_id, channel),"
        " h AS (INSERT INTO alert_events (alert_id, kind, actor, comment)"
        " SELECT alert_id, 'notification_retried', %s, channel || ' notification ' || id"
        " FROM r WHERE alert_id IS NOT NULL)"
        " SELECT id FROM r",
        [by, by, *params, by],
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt as it ended."""

    attempt: int
    at: dt.datetime
    outcome: str
    error: str | None


@dataclass(frozen=True, slots=True)
class ReceiptView:
    """What a provider said of a notification afterwards."""

    received_at: dt.datetime
    provider: str
    delivered: bool
    status: str
    error: str


@dataclass(frozen=True, slots=True)
class Linked:
    """Another row of the same failover chain (the same notice on another channel)."""

    id: int
    channel: str
    receiver: str
    state: str


@dataclass(frozen=True, slots=True)
class NotificationStory:
    """A notification with every attempt, every receipt and its failover chain."""

    row: NotificationView
    attempts: list[Attempt]
    receipts: list[ReceiptView]
    chain: list[Linked]


def story(conn: psycopg.Connection[Any], notification_id: int) -> NotificationStory | None:
    """Everything that happened to one notification, oldest first; None if there is none."""
    row = conn.execute(_SELECT + " WHERE n.id = %s", (notification_id,)).fetchone()
    if row is None:
        return None
    attempts = conn.execute(
        "SELECT attempt, at, outcome, error FROM notification_attempts"
        " WHERE notification_id = %s ORDER BY at, attempt",
        (notification_id,),
    ).fetchall()
    receipts = conn.execute(
        "SELECT received_at, provider, delivered, status, error FROM delivery_receipts"
        " WHERE notification_id = %s ORDER BY id",
        (notification_id,),
    ).fetchall()
    chain = conn.execute(
        "SELECT m.id, m.channel, m.receiver, m.state FROM notifications n, notifications m"
        " WHERE n.id = %s AND m.id <> n.id"
        " AND (m.id = coalesce(n.failover_of, n.id) OR m.failover_of = coalesce(n.failover_of, n.id))"
        " ORDER BY m.id",
        (notification_id,),
    ).fetchall()
    return NotificationStory(
        NotificationView(*row),
        [Attempt(*a) for a in attempts],
        [ReceiptView(*r) for r in receipts],
        [Linked(*c) for c in chain],
    )
