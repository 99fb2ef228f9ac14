"""Alert queries of the API: filtered, keyset-paginated lists, history, and the change feed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

# The SELECT whose column order AlertView(*row) expects: one definition for every reader.
from store.alerts import _ALERT_VIEW as ALERT_SELECT
from store.alerts import AlertView

OPEN_STATES = ("firing", "acknowledged", "resolved")


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What a list of alerts is narrowed to; None (or empty) means no condition."""

    states: Sequence[str] = ()
    severities: Sequence[str] = ()
    unit_id: str | None = None
    device_id: str | None = None
    rule_id: str | None = None
    district: str | None = None
    device_type: str | None = None
    opened_from: dt.datetime | None = None
    opened_to: dt.datetime | None = None
    # The units a caller may see (a unit-scoped token); None: every unit.
    scope: Sequence[str] | None = None


def _where(f: AlertFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for cond, value in (
        ("a.state = ANY(%s)", list(f.states) or None),
        ("a.severity = ANY(%s)", list(f.severities) or None),
        ("a.unit_id = %s", f.unit_id),
        ("d.id = %s", f.device_id),
        ("a.rule_id = %s", f.rule_id),
        ("u.district = %s", f.district),
        ("d.type = %s", f.device_type),
        ("a.opened_at >= %s", f.opened_from),
        ("a.opened_at < %s", f.opened_to),
        ("a.unit_id = ANY(%s)", None if f.scope is None else list(f.scope)),
    ):
        if value is not None:
            where.append(cond)
            params.append(value)
    return where, params


def search_alerts(
    conn: psycopg.Connection[Any],
    f: AlertFilter,
    *,
    limit: int = 100,
    after: tuple[dt.datetime, int] | None = None,
) -> tuple[list[AlertView], tuple[dt.datetime, int] | None]:
    """Alerts newest first; with the (opened_at, id) to pass as `after` for the next page."""
    where, params = _where(f)
    if after is not None:
        where.append("(a.opened_at, a.id) < (%s, %s)")
        params += [after[0], after[1]]
    params.append(limit + 1)
    rows = conn.execute(
        ALERT_SELECT
        + " WHERE "
        + (" AND ".join(where) or "true")
        + " ORDER BY a.opened_at DESC, a.id DESC LIMIT %s",
        params,
    ).fetchall()
    alerts = [AlertView(*r) for r in rows[:limit]]
    more = len(rows) > limit
    return alerts, ((alerts[-1].opened_at, alerts[-1].id) if more and alerts else None)


def get_alert_in_scope(
    conn: psycopg.Connection[Any], alert_id: int, scope: Sequence[str] | None
) -> AlertView | None:
    """One alert, or None when there is none or it lies outside the caller's units."""
    rows = conn.execute(
        ALERT_SELECT + " WHERE a.id = %s AND (%s::text[] IS NULL OR a.unit_id = ANY(%s))",
        (alert_id, None if scope is None else list(scope), None if scope is None else list(scope)),
    ).fetchall()
    return AlertView(*rows[0]) if rows else None


def alerts_by_id(conn: psycopg.Connection[Any], ids: Sequence[int]) -> dict[int, AlertView]:
    """Alerts by id (those that exist)."""
    if not ids:
        return {}
    rows = conn.execute(ALERT_SELECT + " WHERE a.id = ANY(%s)", (list(ids),)).fetchall()
    return {int(r[0]): AlertView(*r) for r in rows}


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One line of an alert's history (alert_events)."""

    id: int
    stream_seq: int | None
    alert_id: int
    at: dt.datetime
    kind: str
    actor: str
    value: float | None
    comment: str


_HISTORY = "SELECT id, stream_seq, alert_id, at, kind, actor, value, comment FROM alert_events"


def history(conn: psycopg.Connection[Any], alert_id: int) -> list[HistoryRow]:
    """Every change of an alert, oldest first."""
    rows = conn.execute(_HISTORY + " WHERE alert_id = %s ORDER BY id", (alert_id,)).fetchall()
    return [HistoryRow(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """An outbox row of an alert: who was (or is to be) told, how, and what became of it."""

    id: int
    channel: str
    receiver: str
    contact_name: str | None
    kind: str
    state: str
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None
    # Who sent it again by hand after it was given up (POST /notifications/retry), and when.
    retried_by: str | None
    retried_at: dt.datetime | None


def notifications(conn: psycopg.Connection[Any], alert_id: int) -> list[NotificationRow]:
    """The notifications of an alert, oldest first."""
    rows = conn.execute(
        "SELECT n.id, n.channel, n.receiver, c.name, n.kind, n.state, n.attempts, n.created_at,"
        " n.sent_at, n.last_error, n.retried_by, n.retried_at"
        " FROM notifications n LEFT JOIN contacts c ON c.id = n.contact_id"
        " WHERE n.alert_id = %s ORDER BY n.id",
        (alert_id,),
    ).fetchall()
    return [NotificationRow(*r) for r in rows]


def last_stream_seq(conn: psycopg.Connection[Any]) -> int:
    """The newest position of the alert change feed (0 when empty)."""
    row = conn.execute("SELECT coalesce(max(stream_seq), 0) FROM alert_events").fetchone()
    return int(row[0]) if row else 0


def events_since(
    conn: psycopg.Connection[Any], seq: int, scope: Sequence[str] | None, limit: int = 500
) -> list[HistoryRow]:
    """Committed alert changes after feed position `seq`, in commit order, within scope."""
    rows = conn.execute(
        "SELECT e.id, e.stream_seq, e.alert_id, e.at, e.kind, e.actor, e.value, e.comment"
        " FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
        " WHERE e.stream_seq > %s AND (%s::text[] IS NULL OR a.unit_id = ANY(%s))"
        " ORDER BY e.stream_seq LIMIT %s",
        (
            seq,
            None if scope is None else list(scope),
            None if scope is None else list(scope),
            limit,
        ),
    ).fetchall()
    return [HistoryRow(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class UnitContact:
    """A person to call about a unit: its own contacts, and its district's (not control rooms)."""

    id: int
    name: str
    role: str
    phone: str | None
    email: str | None
    district_wide: bool


def unit_contacts(
    conn: psycopg.Connection[Any], unit_ids: Sequence[str]
) -> dict[str, list[UnitContact]]:
    """The contacts of each unit: the unit's own first, then its district's, by role and name.

    The control room is left out: it is the one calling.
    """
    if not unit_ids:
        return {}
    rows = conn.execute(
        "SELECT u.id, c.id, c.name, c.role, c.phone, c.email, c.unit_id IS NULL"
        " FROM units u JOIN contacts c"
        "   ON c.unit_id = u.id OR (c.unit_id IS NULL AND c.district = u.district)"
        " WHERE u.id = ANY(%s) AND c.role <> 'control_room'"
        " ORDER BY u.id, c.unit_id IS NULL, c.role, c.name, c.id",
        (list(unit_ids),),
    ).fetchall()
    out: dict[str, list[UnitContact]] = {u: [] for u in unit_ids}
    for r in rows:
        out[r[0]].append(UnitContact(int(r[1]), r[2], r[3], r[4], r[5], bool(r[6])))
    return out
