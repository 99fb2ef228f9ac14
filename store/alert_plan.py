"""Alert plans in and out of the database: the snapshot a plan is made from, and its writes.

A batch's alert changes are decided in memory (alerts.planner) from a snapshot read here with
a constant number of queries, then written here with a constant number of set-based
statements (arrays through unnest), in the caller's transaction: the number of statements
does not grow with the number of alerts, history lines or notifications.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg
from psycopg import errors

from store.alerts import _ALERT_VIEW, AlertView, ContactRow
from store.channels import notify_outbox
from store.pg_arrays import array_params


@dataclass(frozen=True, slots=True)
class HistoryWrite:
    """A line for an alert's history (alert_events), written by the engine."""

    alert_id: int
    kind: str
    value: float | None = None
    comment: str = ""


@dataclass(frozen=True, slots=True)
class OutboxWrite:
    """A notification row; `not_before` None means due at once (the transaction's now())."""

    alert_id: int | None
    channel: str
    receiver: str
    payload: dict[str, Any]
    kind: str
    contact_id: int | None = None
    locale: str = "zh-CN"
    group_key: str | None = None
    not_before: dt.datetime | None = None


@dataclass(slots=True)
class AlertPlan:
    """Everything a batch changes: alert rows to insert or update, history, notifications."""

    inserts: list[AlertView] = field(default_factory=list)
    updates: list[AlertView] = field(default_factory=list)
    history: list[HistoryWrite] = field(default_factory=list)
    outbox: list[OutboxWrite] = field(default_factory=list)

    def empty(self) -> bool:
        """Nothing to write."""
        return not (self.inserts or self.updates or self.history or self.outbox)


_OPEN_ALERTS = (
    "WITH k AS (SELECT * FROM unnest(%s::int[], %s::text[]) AS k(num, rule)),"  # noqa: S608
    " locked AS (SELECT a.id FROM alerts a JOIN k ON a.device_num = k.num"
    " AND a.rule_id = k.rule WHERE a.state <> 'closed' FOR UPDATE OF a)"
    f"{_ALERT_VIEW} WHERE a.id IN (SELECT id FROM locked)"
)
_DUE_ALERTS = (
    "WITH due AS (SELECT id FROM alerts WHERE next_escalation_at <= now() AND state = 'firing'"  # noqa: S608
    " ORDER BY next_escalation_at LIMIT %s FOR UPDATE SKIP LOCKED)"
    f"{_ALERT_VIEW} WHERE a.id IN (SELECT id FROM due) ORDER BY a.next_escalation_at"
)


def _rows(cur: psycopg.Cursor[Any]) -> list[AlertView]:
    return [AlertView(*r) for r in cur.fetchall()]


def open_alerts(
    conn: psycopg.Connection[Any], keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str, str], AlertView]:
    """The open (not closed) alerts of each (device_num, rule_id), every point, locked for this
    transaction; by (device_num, rule_id, point_key)."""
    nums, rules = [], []
    for num, rule in keys:
        nums.append(num)
        rules.append(rule)
    if not nums:
        return {}
    cur = conn.execute(_OPEN_ALERTS, array_params(_OPEN_ALERTS, (nums, rules)))
    return {(r.device_num, r.rule_id, r.point_key): r for r in _rows(cur)}


def open_fire_alarms(conn: psycopg.Connection[Any], unit_ids: Iterable[str]) -> dict[str, int]:
    """How many fire alarms are open (firing or acknowledged, not cleared) at each unit."""
    units = sorted(set(unit_ids))
    if not units:
        return {}
    rows = conn.execute(
        "SELECT unit_id, count(*) FROM alerts WHERE unit_id = ANY(%s) AND needs_verification"
        " AND state IN ('firing', 'acknowledged') GROUP BY unit_id",
        (units,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def due_alerts(conn: psycopg.Connection[Any], limit: int = 100) -> list[AlertView]:
    """Firing alerts whose next escalation or reminder is due, locked (others' locks skipped)."""
    cur = conn.execute(_DUE_ALERTS, (limit,))
    return _rows(cur)


def reserve_ids(conn: psycopg.Connection[Any], n: int) -> list[int]:
    """Take n alert ids now, so a plan can name the alerts it opens before they are written."""
    if n <= 0:
        return []
    rows = conn.execute(
        "SELECT nextval(pg_get_serial_sequence('alerts', 'id')) FROM generate_series(1, %s)", (n,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def contacts_of_units(
    conn: psycopg.Connection[Any], unit_ids: Iterable[str]
) -> dict[str, list[ContactRow]]:
    """Contacts of each unit and of its district (supervisors and control rooms cover many)."""
    units = sorted(set(unit_ids))
    out: dict[str, list[ContactRow]] = {u: [] for u in units}
    if not units:
        return out
    rows = conn.execute(
        "SELECT u.id, c.id, c.name, c.role, c.phone, c.email, c.locale, c.channels,"
        " c.quiet_start, c.quiet_end FROM units u JOIN contacts c"
        " ON c.unit_id = u.id OR (c.unit_id IS NULL AND c.district = u.district)"
        " WHERE u.id = ANY(%s) ORDER BY u.id, c.id",
        (units,),
    ).fetchall()
    for r in rows:
        out[r[0]].append(
            ContactRow(int(r[1]), r[2], r[3], r[4], r[5], r[6], tuple(r[7] or ()), r[8], r[9])
        )
    return out


_INSERT = """
INSERT INTO alerts (id, device_num, unit_id, rule_id, severity, state, metric, threshold,
                    first_value, last_value, opened_at, last_seen_at, count, cleared_at,
                    message_en, message_zh, needs_verification, route, escalation_tier,
                    reminders_sent, silenced_by, next_escalation_at, point_key, loop, point,
                    point_text)
OVERRIDING SYSTEM VALUE
SELECT * FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::text[], %s::text[],
                     %s::text[], %s::float8[], %s::float8[], %s::float8[], %s::timestamptz[],
                     %s::timestamptz[], %s::int[], %s::timestamptz[], %s::text[], %s::text[],
                     %s::bool[], %s::text[], %s::int[], %s::int[], %s::bigint[],
                     %s::timestamptz[], %s::text[], %s::int[], %s::int[], %s::text[])
ON CONFLICT (device_num, rule_id, point_key) WHERE state <> 'closed' DO NOTHING
RETURNING id
"""

_UPDATE = """
UPDATE alerts a SET state = v.state, last_value = v.value, last_seen_at = v.seen, count = v.n,
    cleared_at = v.cleared, route = v.route, escalation_tier = v.tier, reminders_sent = v.rem,
    silenced_by = v.sil, next_escalation_at = v.next, updated_at = now()
FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::timestamptz[], %s::int[],
            %s::timestamptz[], %s::text[], %s::int[], %s::int[], %s::bigint[], %s::timestamptz[])
     AS v(id, state, value, seen, n, cleared, route, tier, rem, sil, next)
WHERE a.id = v.id
"""

_HISTORY = """
INSERT INTO alert_events (alert_id, kind, value, comment)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::text[])
"""

_OUTBOX = """
INSERT INTO notifications (alert_id, channel, receiver, payload, kind, contact_id, locale,
                           group_key, next_attempt_at)
SELECT v.alert_id, v.channel, v.receiver, v.payload::jsonb, v.kind, v.contact_id, v.locale,
       v.group_key, coalesce(v.not_before, now())
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[],
            %s::text[], %s::text[], %s::timestamptz[])
     AS v(alert_id, channel, receiver, payload, kind, contact_id, locale, group_key, not_before)
"""


def _columns(rows: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    return [[getattr(r, n) for r in rows] for n in names]


_INSERT_COLUMNS = (
    "id", "device_num", "unit_id", "rule_id", "severity", "state", "metric", "threshold",
    "first_value", "value", "opened_at", "last_seen_at", "count", "cleared_at", "message_en",
    "message_zh", "needs_verification", "route", "escalation_tier", "reminders_sent",
    "silenced_by", "next_escalation_at", "point_key", "loop", "point", "point_text",
)  # fmt: skip
_UPDATE_COLUMNS = (
    "id", "state", "value", "last_seen_at", "count", "cleared_at", "route", "escalation_tier",
    "reminders_sent", "silenced_by", "next_escalation_at",
)  # fmt: skip
_HISTORY_COLUMNS = ("alert_id", "kind", "value", "comment")
_OUTBOX_COLUMNS = (
    "alert_id", "channel", "receiver", "payload", "kind", "contact_id", "locale", "group_key",
    "not_before",
)  # fmt: skip


def write_plan(conn: psycopg.Connection[Any], plan: AlertPlan) -> None:
    """Write a plan in at most four statements (plus a NOTIFY when notifications were queued)."""
    if plan.inserts:
        cols = _columns(plan.inserts, _INSERT_COLUMNS)
        inserted = conn.execute(_INSERT, array_params(_INSERT, cols)).fetchall()
        if len(inserted) != len(plan.inserts):
            # Another writer opened one of these alerts since the snapshot: plan again.
            raise errors.SerializationFailure(
                f"{len(plan.inserts) - len(inserted)} alert(s) opened concurrently; retry the batch"
            )
    if plan.updates:
        conn.execute(_UPDATE, array_params(_UPDATE, _columns(plan.updates, _UPDATE_COLUMNS)))
    if plan.history:
        conn.execute(_HISTORY, array_params(_HISTORY, _columns(plan.history, _HISTORY_COLUMNS)))
    if plan.outbox:
        insert_outbox(conn, plan.outbox)
        notify_outbox(conn)


def insert_outbox(conn: psycopg.Connection[Any], rows: Sequence[OutboxWrite]) -> None:
    """Outbox rows in one statement; the caller wakes the worker (channels.notify_outbox)."""
    cols = _columns(rows, _OUTBOX_COLUMNS)
    # An alert's rows share one payload object (every party gets the same notice): encode once.
    encoded: dict[int, str] = {}
    cols[3] = [
        encoded.get(id(p)) or encoded.setdefault(id(p), msgspec.json.encode(p).decode())
        for p in cols[3]
    ]
    conn.execute(_OUTBOX, array_params(_OUTBOX, cols))


def enqueue(
    conn: psycopg.Connection[Any],
    alert_id: int | None,
    channel: str,
    receiver: str,
    payload: dict[str, Any],
    *,
    kind: str = "firing",
    contact_id: int | None = None,
    locale: str = "zh-CN",
    group_key: str | None = None,
    not_before: dt.datetime | None = None,
) -> None:
    """One outbox row addressed to a party, in the caller's transaction."""
    row = OutboxWrite(
        alert_id, channel, receiver, payload, kind, contact_id, locale, group_key, not_before
    )
    insert_outbox(conn, [row])
