"""Silence rows: write one, find the one muting an alert now, list, show and end them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

# pending: starts later; active: mutes now; expired: its end passed; ended: ended by hand.
SILENCE_STATES = ("pending", "active", "expired", "ended")
# At most this many alert ids are listed with a silence.
MAX_ALERT_IDS = 1000


@dataclass(frozen=True, slots=True)
class NewSilence:
    """A silence decided by alerts.silences, ready to be written."""

    unit_id: str | None
    device_id: str | None
    rule_id: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    author: str
    reason: str
    covers_critical: bool


@dataclass(frozen=True, slots=True)
class SilenceRow:
    """A silence as operators and the dispatcher see it."""

    id: int
    unit_id: str | None
    device_id: str | None
    rule_id: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    author: str
    reason: str
    created_at: dt.datetime
    covers_critical: bool
    ended_at: dt.datetime | None
    ended_by: str | None
    end_comment: str
    state: str
    # The unit it belongs to (its own, or its device's); None for a rule across all units.
    scope_unit: str | None
    # Alerts not yet closed that it muted.
    alert_ids: tuple[int, ...]


_STATE = (
    "CASE WHEN s.ended_at IS NOT NULL THEN 'ended' WHEN now() >= s.ends_at THEN 'expired'"
    " WHEN now() < s.starts_at THEN 'pending' ELSE 'active' END"
)
_MUTED = f"""ARRAY(SELECT a.id FROM alerts a WHERE a.silenced_by = s.id AND a.state <> 'closed'
             ORDER BY a.id LIMIT {MAX_ALERT_IDS})"""  # noqa: S608 (constant text only)
_COLUMNS = f"""
SELECT s.id, s.unit_id, s.device_id, s.rule_id, s.starts_at, s.ends_at, s.author, s.reason,
       s.created_at, s.covers_critical, s.ended_at, s.ended_by, s.end_comment, {_STATE},
       coalesce(s.unit_id, d.unit_id), {{muted}}
FROM silences s LEFT JOIN devices d ON d.id = s.device_id
"""  # noqa: S608 (constant text only)
_SELECT = _COLUMNS.format(muted=_MUTED)
# The engine plans with silences on every batch that changes an alert: it needs no list of
# what they muted, and that list scans alerts (silenced_by has no index) once per silence.
_SELECT_FOR_PLANNING = _COLUMNS.format(muted="ARRAY[]::bigint[]")
_IN_SCOPE = "(%(scope)s::text[] IS NULL OR coalesce(s.unit_id, d.unit_id) = ANY(%(scope)s))"
_ACTIVE = "s.ended_at IS NULL AND now() >= s.starts_at AND now() < s.ends_at"


def _row(r: Sequence[Any]) -> SilenceRow:
    values = [*r[:15], tuple(int(x) for x in r[15])]
    return SilenceRow(*values)


def _scope(scope: Sequence[str] | None) -> list[str] | None:
    return None if scope is None else list(scope)


def db_now(conn: psycopg.Connection[Any]) -> dt.datetime:
    """The database's clock: silences are compared with it, so their cap is measured on it."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def insert(conn: psycopg.Connection[Any], s: NewSilence) -> int:
    """Write a silence; return its id."""
    row = conn.execute(
        "INSERT INTO silences (unit_id, device_id, rule_id, starts_at, ends_at, author, reason,"
        " covers_critical) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            s.unit_id,
            s.device_id,
            s.rule_id,
            s.starts_at,
            s.ends_at,
            s.author,
            s.reason,
            s.covers_critical,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def get(
    conn: psycopg.Connection[Any], silence_id: int, scope: Sequence[str] | None = None
) -> SilenceRow | None:
    """One silence, or None when there is none or it lies outside the caller's units."""
    row = conn.execute(
        _SELECT + f" WHERE s.id = %(id)s AND {_IN_SCOPE}",
        {"id": silence_id, "scope": _scope(scope)},
    ).fetchone()
    return None if row is None else _row(row)


def search(
    conn: psycopg.Connection[Any],
    *,
    states: Sequence[str] = ("pending", "active"),
    unit_id: str | None = None,
    scope: Sequence[str] | None = None,
    limit: int = 100,
) -> list[SilenceRow]:
    """Silences in these states, newest first, of one unit and/or the caller's units."""
    rows = conn.execute(
        _SELECT + f" WHERE {_STATE} = ANY(%(states)s) AND {_IN_SCOPE}"
        " AND (%(unit)s::text IS NULL OR coalesce(s.unit_id, d.unit_id) = %(unit)s)"
        " ORDER BY s.created_at DESC, s.id DESC LIMIT %(limit)s",
        {"states": list(states), "scope": _scope(scope), "unit": unit_id, "limit": limit},
    ).fetchall()
    return [_row(r) for r in rows]


def active_for(
    conn: psycopg.Connection[Any], unit_id: str, device_id: str, rule_id: str
) -> SilenceRow | None:
    """The silence that mutes this (unit, device, rule) now, if any (the longest-running)."""
    row = conn.execute(
        _SELECT + f" WHERE {_ACTIVE}"
        " AND (s.unit_id IS NULL OR s.unit_id = %(unit)s)"
        " AND (s.device_id IS NULL OR s.device_id = %(device)s)"
        " AND (s.rule_id IS NULL OR s.rule_id = %(rule)s) ORDER BY s.ends_at DESC, s.id LIMIT 1",
        {"unit": unit_id, "device": device_id, "rule": rule_id},
    ).fetchone()
    return None if row is None else _row(row)


def active_or_named(
    conn: psycopg.Connection[Any],
    units: Iterable[str],
    devices: Iterable[str],
    rules: Iterable[str],
    ids: Iterable[int],
) -> list[SilenceRow]:
    """Silences active now that may mute any of these units, devices and rules, and the silences
    named by id (those that muted alerts earlier), longest-running first; state says which.
    For planning: their alert_ids are left empty."""
    rows = conn.execute(
        _SELECT_FOR_PLANNING + f" WHERE ({_ACTIVE}"
        " AND (s.unit_id IS NULL OR s.unit_id = ANY(%(units)s))"
        " AND (s.device_id IS NULL OR s.device_id = ANY(%(devices)s))"
        " AND (s.rule_id IS NULL OR s.rule_id = ANY(%(rules)s))) OR s.id = ANY(%(ids)s)"
        " ORDER BY s.ends_at DESC, s.id",
        {
            "units": sorted(set(units)),
            "devices": sorted(set(devices)),
            "rules": sorted(set(rules)),
            "ids": sorted(set(ids)),
        },
    ).fetchall()
    return [_row(r) for r in rows]


def mutes(s: SilenceRow, unit_id: str, device_id: str, rule_id: str) -> bool:
    """Whether an active silence mutes this (unit, device, rule): all it names must match."""
    return (
        s.state == "active"
        and (s.unit_id is None or s.unit_id == unit_id)
        and (s.device_id is None or s.device_id == device_id)
        and (s.rule_id is None or s.rule_id == rule_id)
    )


def end(conn: psycopg.Connection[Any], silence_id: int, actor: str, comment: str) -> bool:
    """End a pending or active silence now; its alerts still firing are due for the engine's
    next escalation pass, which tells the parties it muted. False if it had already ended."""
    row = conn.execute(
        "UPDATE silences SET ended_at = now(), ended_by = %s, end_comment = %s"
        " WHERE id = %s AND ended_at IS NULL AND ends_at > now() RETURNING id",
        (actor, comment, silence_id),
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        "UPDATE alerts SET next_escalation_at = now() WHERE silenced_by = %s AND state = 'firing'",
        (silence_id,),
    )
    return True


def mute_alert(
    conn: psycopg.Connection[Any],
    alert_id: int,
    silence_id: int,
    next_at: dt.datetime | None,
    *,
    route: str | None = None,
    reset_route: bool = False,
) -> None:
    """Record that a silence mutes the alert, and when the engine looks at it next."""
    if reset_route:
        conn.execute(
            "UPDATE alerts SET silenced_by = %s, route = %s, escalation_tier = 0,"
            " reminders_sent = 0, next_escalation_at = %s WHERE id = %s",
            (silence_id, route, next_at, alert_id),
        )
    else:
        conn.execute(
            "UPDATE alerts SET silenced_by = %s, next_escalation_at = %s WHERE id = %s",
            (silence_id, next_at, alert_id),
        )


def unmute_alert(conn: psycopg.Connection[Any], alert_id: int) -> None:
    """The alert's silence is over: it is no longer muted."""
    conn.execute("UPDATE alerts SET silenced_by = NULL WHERE id = %s", (alert_id,))
