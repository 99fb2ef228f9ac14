"""Unit risk grades: the alert facts the grader reads, and its grades and their changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg

# One transaction-level lock per database: two engines grading at once would write the same
# change twice. The key is arbitrary but fixed (b"grades" as an integer).
GRADING_LOCK = 0x677261646573

# Per unit, rule and verification outcome: alerts opened in the window, open now, and the hours
# they lasted inside the window (until cleared; a closed alert that never cleared ends when it
# was closed; an open one lasts until now); and the unit's overdue hazards (see below).
_FACTS = """
SELECT u.id, u.category, a.rule_id, a.v, a.opened, a.open_now, a.hours
FROM units u
LEFT JOIN LATERAL (
    SELECT a.rule_id,
           CASE WHEN a.verification IS NOT NULL THEN a.verification
                WHEN a.needs_verification THEN 'unverified' END AS v,
           count(*) FILTER (WHERE a.opened_at >= %(since)s)::int AS opened,
           count(*) FILTER (WHERE a.state IN ('firing', 'acknowledged'))::int AS open_now,
           coalesce(sum(greatest(0, extract(epoch FROM
               least(coalesce(a.cleared_at, a.closed_at, %(now)s), %(now)s)
               - greatest(a.opened_at, %(since)s)))), 0)::float8 / 3600 AS hours
    FROM alerts a
    WHERE a.unit_id = u.id AND a.opened_at < %(now)s
      AND (a.state <> 'closed' OR coalesce(a.cleared_at, a.closed_at) >= %(since)s)
    GROUP BY 1, 2
    UNION ALL
    -- Open hazards past their deadline, as the pseudo rule 'hazard:overdue' (open now).
    SELECT 'hazard:overdue', NULL, 0, count(*)::int, 0::float8
    FROM hazards h
    WHERE h.unit_id = u.id AND h.state <> 'closed' AND h.deadline < %(now)s
    HAVING count(*) > 0
) a ON true
WHERE %(units)s::text[] IS NULL OR u.id = ANY(%(units)s)
ORDER BY u.id
"""


@dataclass(frozen=True, slots=True)
class FactRow:
    """A row of the facts query: a unit, and (unless it has no alerts) one rule's figures."""

    unit_id: str
    category: str
    rule_id: str | None
    verification: str | None
    opened: int | None
    open_now: int | None
    hours: float | None


def alert_facts(
    conn: psycopg.Connection[Any],
    now: dt.datetime,
    window: dt.timedelta,
    units: Sequence[str] | None = None,
) -> list[FactRow]:
    """Every unit (or the given ones), with its alerts' figures per rule over the window."""
    rows = conn.execute(
        _FACTS,
        {"now": now, "since": now - window, "units": None if units is None else list(units)},
    ).fetchall()
    return [FactRow(*r) for r in rows]


def unit_ids(conn: psycopg.Connection[Any]) -> list[str]:
    """Every unit's id, in order."""
    return [r[0] for r in conn.execute("SELECT id FROM units ORDER BY id").fetchall()]


@dataclass(frozen=True, slots=True)
class GradeRow:
    """What is written for one unit: its grade, score and reasons (a list of plain dicts)."""

    unit_id: str
    grade: str
    score: float
    reasons: list[dict[str, Any]]


_WRITE = """
WITH new AS (
    SELECT * FROM unnest(%(units)s::text[], %(grades)s::text[], %(scores)s::float8[],
                         %(reasons)s::jsonb[]) AS n(unit_id, grade, score, reasons)
), old AS (
    SELECT g.unit_id, g.grade FROM unit_grades g JOIN new USING (unit_id)
), changed AS (
    INSERT INTO unit_grade_changes (unit_id, at, from_grade, to_grade, score, reasons,
                                    model_version, trigger)
    SELECT n.unit_id, %(now)s, o.grade, n.grade, n.score, n.reasons, %(version)s, %(trigger)s
    FROM new n LEFT JOIN old o USING (unit_id)
    WHERE o.grade IS DISTINCT FROM n.grade
    RETURNING unit_id
), upserted AS (
    INSERT INTO unit_grades AS g (unit_id, grade, score, reasons, model_version, since,
                                  computed_at)
    SELECT n.unit_id, n.grade, n.score, n.reasons, %(version)s, %(now)s, %(now)s FROM new n
    ON CONFLICT (unit_id) DO UPDATE SET
        grade = EXCLUDED.grade, score = EXCLUDED.score, reasons = EXCLUDED.reasons,
        model_version = EXCLUDED.model_version, computed_at = EXCLUDED.computed_at,
        since = CASE WHEN g.grade = EXCLUDED.grade THEN g.since ELSE EXCLUDED.since END
    RETURNING unit_id
)
SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM upserted)
"""


def lock(conn: psycopg.Connection[Any]) -> None:
    """Take this transaction's grading lock, waiting while another engine grades."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (GRADING_LOCK,))


def try_lock(conn: psycopg.Connection[Any]) -> bool:
    """Take this transaction's grading lock, or say that another engine grades right now."""
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (GRADING_LOCK,)).fetchone()
    return bool(row and row[0])


def write_grades(
    conn: psycopg.Connection[Any],
    rows: Sequence[GradeRow],
    now: dt.datetime,
    *,
    version: str,
    trigger: str,
) -> int:
    """Store the grades in one statement; a grade that differs from the stored one is a change.

    Returns how many units changed grade.
    """
    if not rows:
        return 0
    found = conn.execute(
        _WRITE,
        {
            "units": [r.unit_id for r in rows],
            "grades": [r.grade for r in rows],
            "scores": [r.score for r in rows],
            "reasons": [msgspec.json.encode(r.reasons).decode() for r in rows],
            "now": now,
            "version": version,
            "trigger": trigger,
        },
    ).fetchone()
    return int(found[0]) if found else 0


@dataclass(frozen=True, slots=True)
class StoredGrade:
    """A unit's current grade as stored."""

    unit_id: str
    grade: str
    score: float
    reasons: list[dict[str, Any]]
    model_version: str
    since: dt.datetime
    computed_at: dt.datetime


def current_grades(
    conn: psycopg.Connection[Any], units: Sequence[str] | None = None
) -> dict[str, StoredGrade]:
    """The stored grade of every unit (or of the given ones) that has been graded."""
    rows = conn.execute(
        "SELECT unit_id, grade, score, reasons, model_version, since, computed_at"
        " FROM unit_grades WHERE %(units)s::text[] IS NULL OR unit_id = ANY(%(units)s)",
        {"units": None if units is None else list(units)},
    ).fetchall()
    return {r[0]: StoredGrade(*r) for r in rows}


@dataclass(frozen=True, slots=True)
class GradeChange:
    """One change of a unit's grade, with the reasons it had then."""

    at: dt.datetime
    from_grade: str | None
    to_grade: str
    score: float
    reasons: list[dict[str, Any]]
    model_version: str
    trigger: str


def grade_history(conn: psycopg.Connection[Any], unit_id: str, limit: int) -> list[GradeChange]:
    """The unit's grade changes, newest first."""
    rows = conn.execute(
        "SELECT at, from_grade, to_grade, score, reasons, model_version, trigger"
        " FROM unit_grade_changes WHERE unit_id = %s ORDER BY at DESC, id DESC LIMIT %s",
        (unit_id, limit),
    ).fetchall()
    return [GradeChange(*r) for r in rows]
