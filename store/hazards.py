"""Hazards (隐患): create, read, step through their states, photos, what the data finds,
reminders and overdue ones, their messages, and counts by unit or district."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg

from store.channels import notify_outbox

_HAZARD = (
    "SELECT h.id, h.unit_id, u.name, u.district, h.device_id, h.category, h.severity,"
    " h.description, h.source, h.rule_id, h.found_by, h.found_at, h.responsible, h.deadline,"
    " h.state, h.overdue_at, h.closed_at, h.updated_at,"
    " (SELECT count(*) FROM hazard_photos p WHERE p.hazard_id = h.id)"
    " FROM hazards h JOIN units u ON u.id = h.unit_id"
)


@dataclass(frozen=True, slots=True)
class HazardRow:
    """A hazard with its unit's name and district."""

    id: int
    unit_id: str
    unit_name: str
    district: str
    device_id: str | None
    category: str
    severity: str
    description: str
    source: str
    rule_id: str | None
    found_by: str
    found_at: dt.datetime
    responsible: str
    deadline: dt.datetime
    state: str
    overdue_at: dt.datetime | None
    closed_at: dt.datetime | None
    updated_at: dt.datetime
    photos: int


@dataclass(frozen=True, slots=True)
class NewHazard:
    """A hazard to record: by a person, or found by the data (rule_id and dedup_key)."""

    unit_id: str
    category: str
    severity: str
    description: str
    found_by: str
    deadline: dt.datetime
    device_id: str | None = None
    responsible: str = ""
    rule_id: str | None = None
    dedup_key: str | None = None


def create(conn: psycopg.Connection[Any], h: NewHazard, comment: str = "") -> int | None:
    """Record a hazard and its 'found' step; None when the data found one already open."""
    row = conn.execute(
        "INSERT INTO hazards (unit_id, device_id, category, severity, description, source,"
        " rule_id, dedup_key, found_by, responsible, deadline)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (dedup_key) WHERE state <> 'closed' DO NOTHING RETURNING id",
        (
            h.unit_id,
            h.device_id,
            h.category,
            h.severity,
            h.description,
            "data" if h.rule_id is not None else "person",
            h.rule_id,
            h.dedup_key,
            h.found_by,
            h.responsible,
            h.deadline,
        ),
    ).fetchone()
    if row is None:
        return None
    hazard_id = int(row[0])
    record(conn, hazard_id, "found", h.found_by, comment)
    return hazard_id


def record(
    conn: psycopg.Connection[Any],
    hazard_id: int,
    kind: str,
    actor: str,
    comment: str = "",
    photo_ids: Sequence[int] = (),
) -> None:
    """Append a step to the hazard's history."""
    conn.execute(
        "INSERT INTO hazard_events (hazard_id, kind, actor, comment, photo_ids)"
        " VALUES (%s, %s, %s, %s, %s)",
        (hazard_id, kind, actor, comment, list(photo_ids)),
    )


def get(
    conn: psycopg.Connection[Any], hazard_id: int, scope: Sequence[str] | None = None
) -> HazardRow | None:
    """One hazard (None: none such, or outside the unit scope)."""
    sql = _HAZARD + " WHERE h.id = %s"
    params: list[Any] = [hazard_id]
    if scope is not None:
        sql += " AND h.unit_id = ANY(%s)"
        params.append(list(scope))
    row = conn.execute(sql, params).fetchone()
    return None if row is None else HazardRow(*row)


@dataclass(frozen=True, slots=True)
class HazardFilter:
    """Which hazards to list."""

    unit_id: str | None = None
    district: str | None = None
    states: Sequence[str] | None = None
    overdue: bool | None = None
    scope: Sequence[str] | None = None


def search(conn: psycopg.Connection[Any], f: HazardFilter, limit: int = 200) -> list[HazardRow]:
    """Hazards, open ones by deadline first, then closed ones newest first."""
    where: list[str] = ["true"]
    params: list[Any] = []
    for clause, value in (
        ("h.unit_id = %s", f.unit_id),
        ("u.district = %s", f.district),
        ("h.state = ANY(%s)", list(f.states) if f.states else None),
        ("h.unit_id = ANY(%s)", list(f.scope) if f.scope is not None else None),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    if f.overdue is not None:
        where.append("h.overdue_at IS NOT NULL" if f.overdue else "h.overdue_at IS NULL")
    rows = conn.execute(
        _HAZARD + " WHERE " + " AND ".join(where) + " ORDER BY h.state = 'closed',"
        " CASE WHEN h.state = 'closed' THEN NULL ELSE h.deadline END, h.closed_at DESC, h.id"
        " LIMIT %s",
        [*params, limit],
    ).fetchall()
    return [HazardRow(*r) for r in rows]


def step(
    conn: psycopg.Connection[Any],
    hazard_id: int,
    sources: Sequence[str],
    target: str,
    *,
    kind: str,
    actor: str,
    comment: str = "",
    photo_ids: Sequence[int] = (),
    responsible: str | None = None,
) -> bool:
    """Move a hazard from one of `sources` to `target` and record the step; False: it was not
    in one of them (someone else moved it first)."""
    row = conn.execute(
        "UPDATE hazards SET state = %s, updated_at = now(),"
        " closed_at = CASE WHEN %s = 'closed' THEN now() ELSE NULL END,"
        " responsible = coalesce(%s, responsible)"
        " WHERE id = %s AND state = ANY(%s) RETURNING id",
        (target, target, responsible, hazard_id, list(sources)),
    ).fetchone()
    if row is None:
        return False
    record(conn, hazard_id, kind, actor, comment, photo_ids)
    return True


@dataclass(frozen=True, slots=True)
class HazardEvent:
    """One step of a hazard: who did what, when, with which photos."""

    id: int
    at: dt.datetime
    kind: str
    actor: str
    comment: str
    photo_ids: list[int]


def events(conn: psycopg.Connection[Any], hazard_id: int) -> list[HazardEvent]:
    """The hazard's steps, oldest first."""
    rows = conn.execute(
        "SELECT id, at, kind, actor, comment, photo_ids FROM hazard_events"
        " WHERE hazard_id = %s ORDER BY id",
        (hazard_id,),
    ).fetchall()
    return [HazardEvent(int(r[0]), r[1], r[2], r[3], r[4], [int(p) for p in r[5]]) for r in rows]


def add_photo(
    conn: psycopg.Connection[Any], hazard_id: int, content_type: str, data: bytes, actor: str
) -> int:
    """Keep a photo of the hazard; return its id."""
    row = conn.execute(
        "INSERT INTO hazard_photos (hazard_id, content_type, data, sha256, uploaded_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (hazard_id, content_type, data, hashlib.sha256(data).hexdigest(), actor),
    ).fetchone()
    assert row is not None
    return int(row[0])


def photo(conn: psycopg.Connection[Any], hazard_id: int, photo_id: int) -> tuple[str, bytes] | None:
    """A photo's content type and bytes (None: not a photo of this hazard)."""
    row = conn.execute(
        "SELECT content_type, data FROM hazard_photos WHERE hazard_id = %s AND id = %s",
        (hazard_id, photo_id),
    ).fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]))


def photos_of(conn: psycopg.Connection[Any], hazard_id: int, ids: Sequence[int]) -> list[int]:
    """Those of `ids` that are photos of this hazard."""
    rows = conn.execute(
        "SELECT id FROM hazard_photos WHERE hazard_id = %s AND id = ANY(%s) ORDER BY id",
        (hazard_id, list(ids)),
    ).fetchall()
    return [int(r[0]) for r in rows]


@dataclass(frozen=True, slots=True)
class LongOpenRow:
    """An alert of the given rules still open (not cleared) since opened_at."""

    unit_id: str
    device_id: str
    rule_id: str
    opened_at: dt.datetime


def long_open(
    conn: psycopg.Connection[Any], rules: Sequence[str], opened_before: dt.datetime
) -> list[LongOpenRow]:
    """Alerts of these rules firing or acknowledged, not cleared, opened before the time; the
    oldest per device."""
    rows = conn.execute(
        "SELECT DISTINCT ON (a.device_num) a.unit_id, d.id, a.rule_id, a.opened_at"
        " FROM alerts a JOIN devices d ON d.num = a.device_num"
        " WHERE a.rule_id = ANY(%s) AND a.state IN ('firing', 'acknowledged')"
        " AND a.cleared_at IS NULL AND a.opened_at <= %s"
        " ORDER BY a.device_num, a.opened_at",
        (list(rules), opened_before),
    ).fetchall()
    return [LongOpenRow(*r) for r in rows]


def false_alarm_counts(conn: psycopg.Connection[Any], since: dt.datetime) -> dict[str, int]:
    """False alarms per unit among the alerts opened since the time."""
    rows = conn.execute(
        "SELECT unit_id, count(*) FROM alerts WHERE verification = 'false_alarm'"
        " AND opened_at >= %s GROUP BY unit_id",
        (since,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def _take(
    conn: psycopg.Connection[Any], column: str, due: str, params: Sequence[Any], kind: str
) -> list[HazardRow]:
    """Open hazards matching `due`, not yet marked in `column`, marked now with a step of
    `kind` (in the caller's transaction; others' locks skipped)."""
    ids = [
        int(r[0])
        for r in conn.execute(
            f"UPDATE hazards SET {column} = now() WHERE id IN ("  # noqa: S608 (fixed text)
            f" SELECT id FROM hazards WHERE state <> 'closed' AND {column} IS NULL AND {due}"
            " ORDER BY deadline LIMIT 500 FOR UPDATE SKIP LOCKED) RETURNING id",
            params,
        ).fetchall()
    ]
    for hazard_id in ids:
        record(conn, hazard_id, kind, "engine")
    if not ids:
        return []
    rows = conn.execute(_HAZARD + " WHERE h.id = ANY(%s) ORDER BY h.id", (ids,)).fetchall()
    return [HazardRow(*r) for r in rows]


def take_reminders(
    conn: psycopg.Connection[Any], now: dt.datetime, before: dt.timedelta
) -> list[HazardRow]:
    """Open hazards due within `before` and not reminded yet, marked reminded now with a
    'reminded' step."""
    return _take(
        conn, "reminded_at", "deadline >= %s AND deadline < %s", (now, now + before), "reminded"
    )


def take_overdue(conn: psycopg.Connection[Any], now: dt.datetime) -> list[HazardRow]:
    """Open hazards past their deadline not yet marked so, marked overdue now with an 'overdue'
    step."""
    return _take(conn, "overdue_at", "deadline < %s", (now,), "overdue")


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a hazard to one address (rendered already: title and text)."""

    channel: str
    receiver: str
    contact_id: int
    locale: str
    hazard_id: int
    title: str
    text: str


def queue(conn: psycopg.Connection[Any], messages: Sequence[Message]) -> None:
    """Queue hazard messages in the outbox, due now, and wake it on commit."""
    if not messages:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO notifications (alert_id, channel, receiver, payload, kind, contact_id,"
            " locale) VALUES (NULL, %s, %s, %s::jsonb, 'hazard', %s, %s)",
            [
                (
                    m.channel,
                    m.receiver,
                    msgspec.json.encode(
                        {"hazard_id": m.hazard_id, "title": m.title, "text": m.text}
                    ).decode(),
                    m.contact_id,
                    m.locale,
                )
                for m in messages
            ],
        )
    notify_outbox(conn)


@dataclass(frozen=True, slots=True)
class HazardCount:
    """Hazards of a unit or district: found (all), open now, closed (rectified), overdue now."""

    key: str
    name: str
    found: int
    open: int
    closed: int
    overdue: int


_GROUPS = {
    "unit": ("u.id", "u.name"),
    "district": ("u.district", "u.district"),
    "finder": ("h.found_by", "h.found_by"),
}


def counts(
    conn: psycopg.Connection[Any], group: str, scope: Sequence[str] | None = None
) -> list[HazardCount]:
    """Counts per unit, district or finder (the person, or the data, who found them), most
    overdue first."""
    # key and name are one of the fixed pairs of _GROUPS, never the caller's text.
    key, name = _GROUPS[group]
    sql = (
        f"SELECT {key}, min({name}), count(*), count(*) FILTER (WHERE h.state <> 'closed'),"  # noqa: S608
        " count(*) FILTER (WHERE h.state = 'closed'),"
        " count(*) FILTER (WHERE h.state <> 'closed' AND h.overdue_at IS NOT NULL)"
        " FROM hazards h JOIN units u ON u.id = h.unit_id"
    )
    params: list[Any] = []
    if scope is not None:
        sql += " WHERE h.unit_id = ANY(%s)"
        params.append(list(scope))
    sql += f" GROUP BY {key} ORDER BY 6 DESC, 4 DESC, 1"
    rows = conn.execute(sql, params).fetchall()
    return [HazardCount(str(r[0]), str(r[1]), *(int(x) for x in r[2:])) for r in rows]
