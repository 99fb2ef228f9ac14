"""The duty log: shifts (start, end with the handover), notes, and what is open at a handover."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg

_SHIFT = (
    "SELECT id, operator, started_at, ended_at, handover_note, handed_to, open_at_handover"
    " FROM duty_shifts"
)


@dataclass(frozen=True, slots=True)
class Note:
    """A note written during a shift."""

    id: int
    at: dt.datetime
    author: str
    text: str


@dataclass(frozen=True, slots=True)
class Shift:
    """A shift: who, from when to when, the handover, its notes."""

    id: int
    operator: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    handover_note: str
    handed_to: str
    open_at_handover: dict[str, Any] | None
    notes: list[Note] = field(default_factory=list)


def _one(conn: psycopg.Connection[Any], where: str, params: Sequence[Any]) -> Shift | None:
    row = conn.execute(_SHIFT + " WHERE " + where, params).fetchone()
    if row is None:
        return None
    s = Shift(*row)
    s.notes.extend(_notes(conn, [s.id]).get(s.id, []))
    return s


def open_shift(conn: psycopg.Connection[Any], operator: str) -> Shift | None:
    """The operator's shift still open (with its notes), if any."""
    return _one(conn, "operator = %s AND ended_at IS NULL", (operator,))


def get(conn: psycopg.Connection[Any], shift_id: int) -> Shift | None:
    """One shift with its notes."""
    return _one(conn, "id = %s", (shift_id,))


def start(conn: psycopg.Connection[Any], operator: str) -> int | None:
    """Open a shift for the operator; None when one is open already."""
    row = conn.execute(
        "INSERT INTO duty_shifts (operator) VALUES (%s)"
        " ON CONFLICT (operator) WHERE ended_at IS NULL DO NOTHING RETURNING id",
        (operator,),
    ).fetchone()
    return None if row is None else int(row[0])


def add_note(conn: psycopg.Connection[Any], shift_id: int, author: str, text: str) -> int:
    """Add a note to a shift; return its id."""
    row = conn.execute(
        "INSERT INTO duty_notes (shift_id, author, text) VALUES (%s, %s, %s) RETURNING id",
        (shift_id, author, text),
    ).fetchone()
    assert row is not None
    return int(row[0])


def open_now(conn: psycopg.Connection[Any], limit: int = 200) -> dict[str, Any]:
    """What is open at this moment: alerts not closed (most severe and oldest first, at most
    `limit`, with their total), hazards not closed and those overdue."""
    alerts = conn.execute(
        "SELECT a.id, a.rule_id, a.severity, a.state, u.name FROM alerts a"
        " JOIN units u ON u.id = a.unit_id WHERE a.state <> 'closed'"
        " ORDER BY array_position(ARRAY['critical', 'major', 'warning', 'info'], a.severity),"
        " a.opened_at LIMIT %s",
        (limit,),
    ).fetchall()
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM alerts WHERE state <> 'closed'),"
        " (SELECT count(*) FROM hazards WHERE state <> 'closed'),"
        " (SELECT count(*) FROM hazards WHERE state <> 'closed' AND overdue_at IS NOT NULL)"
    ).fetchone()
    assert counts is not None
    return {
        "alerts": [
            {"id": int(r[0]), "rule_id": r[1], "severity": r[2], "state": r[3], "unit_name": r[4]}
            for r in alerts
        ],
        "alerts_total": int(counts[0]),
        "hazards_open": int(counts[1]),
        "hazards_overdue": int(counts[2]),
    }


def end(
    conn: psycopg.Connection[Any],
    shift_id: int,
    note: str,
    handed_to: str,
    open_at_handover: dict[str, Any],
) -> bool:
    """End an open shift with its handover; False: it was ended already."""
    row = conn.execute(
        "UPDATE duty_shifts SET ended_at = now(), handover_note = %s, handed_to = %s,"
        " open_at_handover = %s::jsonb WHERE id = %s AND ended_at IS NULL RETURNING id",
        (note, handed_to, msgspec.json.encode(open_at_handover).decode(), shift_id),
    ).fetchone()
    return row is not None


def shifts(
    conn: psycopg.Connection[Any],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
) -> list[Shift]:
    """Shifts that overlap [since, until), newest first, with their notes."""
    rows = conn.execute(
        _SHIFT + " WHERE (%s::timestamptz IS NULL OR coalesce(ended_at, now()) >= %s)"
        " AND (%s::timestamptz IS NULL OR started_at < %s) ORDER BY started_at DESC, id DESC"
        " LIMIT %s",
        (since, since, until, until, limit),
    ).fetchall()
    out = [Shift(*r) for r in rows]
    notes = _notes(conn, [s.id for s in out])
    for s in out:
        s.notes.extend(notes.get(s.id, []))
    return out


def _notes(conn: psycopg.Connection[Any], ids: Sequence[int]) -> dict[int, list[Note]]:
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT shift_id, id, at, author, text FROM duty_notes WHERE shift_id = ANY(%s)"
        " ORDER BY id",
        (list(ids),),
    ).fetchall()
    out: dict[int, list[Note]] = {}
    for r in rows:
        out.setdefault(int(r[0]), []).append(Note(int(r[1]), r[2], r[3], r[4]))
    return out
