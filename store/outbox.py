"""The outbox's notification rows: claim the due ones, hold, mark sent or failed, count recent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

# The channel of forwardings to the 119 command centre (alerts/fire_119.py).
FIRE_119 = "fire_119"

_CLAIM = """
UPDATE notifications n
SET state = 'sending', attempts = n.attempts + 1,
    lease_until = now() + make_interval(secs => %(lease)s)
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE (state IN ('pending', 'failed') AND next_attempt_at <= now())
       OR (state = 'sending' AND lease_until < now())
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING n.id, n.alert_id, n.channel, n.receiver, n.idempotency_key::text, n.payload, n.attempts,
          n.group_key, n.kind, n.locale, n.created_at,
          n.channel = 'fire_119' OR coalesce((SELECT a.state <> 'closed'
                    AND a.acknowledged_at IS NULL FROM alerts a WHERE a.id = n.alert_id), true)
"""

# Everything else waiting for the same party (and unit) goes out in the same message.
_CLAIM_GROUP = """
UPDATE notifications n
SET state = 'sending', attempts = n.attempts + 1,
    lease_until = now() + make_interval(secs => %(lease)s)
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE group_key = ANY(%(keys)s) AND state IN ('pending', 'failed') AND id <> ALL(%(ids)s)
    FOR UPDATE SKIP LOCKED
)
RETURNING n.id, n.alert_id, n.channel, n.receiver, n.idempotency_key::text, n.payload, n.attempts,
          n.group_key, n.kind, n.locale, n.created_at,
          n.channel = 'fire_119' OR coalesce((SELECT a.state <> 'closed'
                    AND a.acknowledged_at IS NULL FROM alerts a WHERE a.id = n.alert_id), true)
"""

_RECENT = """
SELECT count(*), min(sent_at) FROM notifications
WHERE channel = %s AND receiver = %s AND state IN ('sent', 'delivered')
  AND sent_at > now() - make_interval(secs => %s) AND (delivered_with IS NULL OR delivered_with = id)
"""


# A notification handed on to another channel of its person (store/failover.py) is one chain:
# the first of its rows to be sent cancels the others still waiting.
_SETTLE_CHAINS = """
UPDATE notifications n SET state = 'cancelled', lease_until = NULL,
    last_error = 'delivered over ' || s.channel || ' (#' || s.id || ')'
FROM notifications s
WHERE s.id = ANY(%s) AND n.id <> s.id AND n.state IN ('pending', 'failed')
  AND (n.id = s.failover_of OR n.failover_of = coalesce(s.failover_of, s.id))
"""


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """A notification row claimed for delivery (state 'sending', attempts already counted).

    Its fields are the RETURNING columns of _CLAIM and _CLAIM_GROUP, in order.
    """

    id: int
    alert_id: int | None
    channel: str
    receiver: str
    key: str
    payload: dict[str, Any]
    attempts: int
    group_key: str | None
    kind: str
    locale: str
    created_at: dt.datetime
    # Its alert is neither closed nor acknowledged (True without an alert, and for a
    # forwarding to 119: a verified fire is acknowledged, and 119 must still hear of it).
    alert_open: bool


@dataclass(frozen=True, slots=True)
class RecentSent:
    """Messages sent to one party on one channel within a window, and when the oldest went."""

    count: int
    oldest: dt.datetime | None


async def claim_due(
    conn: psycopg.AsyncConnection[Any], *, lease_s: float, limit: int
) -> list[ClaimedRow]:
    """Claim up to `limit` due rows (and rows whose lease ran out), oldest due first."""
    cur = await conn.execute(_CLAIM, {"lease": lease_s, "limit": limit})
    return [ClaimedRow(*r) for r in await cur.fetchall()]


async def claim_group(
    conn: psycopg.AsyncConnection[Any],
    *,
    lease_s: float,
    keys: Sequence[str],
    claimed_ids: Sequence[int],
) -> list[ClaimedRow]:
    """Claim every other waiting row of these group keys, due or not, not among claimed_ids."""
    cur = await conn.execute(
        _CLAIM_GROUP, {"lease": lease_s, "keys": list(keys), "ids": list(claimed_ids)}
    )
    return [ClaimedRow(*r) for r in await cur.fetchall()]


async def hold(conn: psycopg.AsyncConnection[Any], ids: Sequence[int], until: dt.datetime) -> None:
    """Put claimed rows back as pending until `until`, without counting the attempt."""
    await conn.execute(
        "UPDATE notifications SET state = 'pending', attempts = attempts - 1,"
        " lease_until = NULL, next_attempt_at = %s WHERE id = ANY(%s)",
        (until, list(ids)),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one delivered message (of one or several rows grouped into it)."""

    ids: Sequence[int]
    state: str  # 'sent', 'failed' (retried after retry_in_s), 'given_up' or 'cancelled'
    error: str | None = None
    retry_in_s: float = 0.0


async def record_outcomes(conn: psycopg.AsyncConnection[Any], outcomes: Sequence[Outcome]) -> None:
    """Record a round's deliveries: sent rows (with the id of the message that carried them:
    its first row), failed rows with their next attempt, given-up rows, each attempt in
    notification_attempts and each ended forwarding to 119 in its alert's history, in one
    statement; a sent row of a failover chain cancels the chain's other waiting rows."""
    rows = [(i, o, o.ids[0]) for o in outcomes for i in o.ids]
    if not rows:
        return
    # Each row's attempt is kept as it ended (its number counted when it was claimed), from
    # what the UPDATE wrote.
    await conn.execute(
        "WITH u AS (UPDATE notifications n SET state = v.state, lease_until = NULL,"
        " sent_at = CASE WHEN v.state = 'sent' THEN now() ELSE n.sent_at END,"
        " last_error = v.error,"
        " first_failed_at = CASE WHEN v.state = 'failed' THEN coalesce(n.first_failed_at, now())"
        " WHEN v.state = 'sent' THEN NULL ELSE n.first_failed_at END,"
        " delivered_with = CASE WHEN v.state = 'sent' THEN v.carrier ELSE n.delivered_with END,"
        " next_attempt_at = CASE WHEN v.state = 'sent' THEN n.next_attempt_at"
        " ELSE now() + make_interval(secs => v.retry_in_s) END"
        " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::float8[], %s::bigint[])"
        " AS v(id, state, error, retry_in_s, carrier) WHERE n.id = v.id"
        " RETURNING n.id, n.attempts, n.state, n.last_error, n.channel, n.alert_id, n.receiver),"
        " a AS (INSERT INTO notification_attempts (notification_id, attempt, outcome, error)"
        " SELECT id, attempts, state, last_error FROM u)"
        # A forwarding to 119 that went through, or was given up, is in the alert's history.
        " INSERT INTO alert_events (alert_id, kind, comment)"
        " SELECT alert_id, CASE state WHEN 'sent' THEN 'forwarded_119' ELSE 'forward_119_failed'"
        " END, receiver || ' #' || id || ', attempt ' || attempts"
        " || coalesce(': ' || last_error, '') FROM u"
        " WHERE channel = 'fire_119' AND alert_id IS NOT NULL AND state <> 'failed'",
        (
            [i for i, _, _ in rows],
            [o.state for _, o, _ in rows],
            [o.error for _, o, _ in rows],
            [o.retry_in_s for _, o, _ in rows],
            [c for _, _, c in rows],
        ),
    )
    sent = [i for i, o, _ in rows if o.state == "sent"]
    if sent:
        await conn.execute(_SETTLE_CHAINS, (sent,))


async def recent_sent(
    conn: psycopg.AsyncConnection[Any], channel: str, receiver: str, window_s: float
) -> RecentSent:
    """Messages (not rows: a group counts once) sent to the party in the last window_s seconds."""
    cur = await conn.execute(_RECENT, (channel, receiver, window_s))
    row = await cur.fetchone()
    if row is None:  # an aggregate always returns a row
        return RecentSent(0, None)
    return RecentSent(int(row[0]), row[1])
