"""Inspections against units' codes: record one, find a resent one, list, count per inspector."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class NewInspection:
    """What an inspector submitted, judged against the checklist."""

    unit_id: str
    inspector: str
    scanned: bool
    checklist_version: str
    results: list[dict[str, Any]]
    failed: int
    comment: str = ""
    client_ref: str | None = None


@dataclass(frozen=True, slots=True)
class InspectionRow:
    """A recorded inspection, with the hazards its failed items became."""

    id: int
    unit_id: str
    unit_name: str
    district: str
    inspector: str
    at: dt.datetime
    scanned: bool
    checklist_version: str
    results: list[dict[str, Any]]
    failed: int
    comment: str
    hazard_ids: list[int]


_COLUMNS = (
    "i.id, i.unit_id, u.name, u.district, i.inspector, i.at, i.scanned, i.checklist_version,"
    " i.results, i.failed, i.comment, i.hazard_ids"
)
_SELECT = "SELECT " + _COLUMNS + " FROM inspections i JOIN units u ON u.id = i.unit_id"  # noqa: S608 (fixed text)


def insert(conn: psycopg.Connection[Any], new: NewInspection) -> int | None:
    """Record it; None when this submission (its client_ref) was recorded already."""
    row = conn.execute(
        "INSERT INTO inspections (unit_id, inspector, scanned, checklist_version, results,"
        " failed, comment, client_ref) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (unit_id, client_ref) WHERE client_ref IS NOT NULL DO NOTHING"
        " RETURNING id",
        (
            new.unit_id,
            new.inspector,
            new.scanned,
            new.checklist_version,
            Jsonb(new.results),
            new.failed,
            new.comment,
            new.client_ref,
        ),
    ).fetchone()
    return int(row[0]) if row else None


def set_hazards(conn: psycopg.Connection[Any], inspection_id: int, ids: Sequence[int]) -> None:
    """Note the hazards the inspection's failed items became."""
    conn.execute("UPDATE inspections SET hazard_ids = %s WHERE id = %s", (list(ids), inspection_id))


def by_ref(conn: psycopg.Connection[Any], unit_id: str, client_ref: str) -> InspectionRow | None:
    """The inspection recorded for this submission, if any."""
    row = conn.execute(
        _SELECT + " WHERE i.unit_id = %s AND i.client_ref = %s",
        (unit_id, client_ref),
    ).fetchone()
    return InspectionRow(*row) if row else None


def get(conn: psycopg.Connection[Any], inspection_id: int) -> InspectionRow | None:
    """One inspection."""
    row = conn.execute(
        _SELECT + " WHERE i.id = %s",
        (inspection_id,),
    ).fetchone()
    return InspectionRow(*row) if row else None


@dataclass(frozen=True, slots=True)
class InspectionFilter:
    """Which inspections: a unit's or a district's, a period, within a token's units."""

    unit: str | None = None
    district: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    scope: Sequence[str] | None = None


_WHERE = (
    " WHERE (%(unit)s::text IS NULL OR i.unit_id = %(unit)s)"
    " AND (%(district)s::text IS NULL OR u.district = %(district)s)"
    " AND (%(since)s::timestamptz IS NULL OR i.at >= %(since)s)"
    " AND (%(until)s::timestamptz IS NULL OR i.at < %(until)s)"
    " AND (%(scope)s::text[] IS NULL OR i.unit_id = ANY(%(scope)s))"
)


def _params(f: InspectionFilter) -> dict[str, Any]:
    return {
        "unit": f.unit,
        "district": f.district,
        "since": f.since,
        "until": f.until,
        "scope": list(f.scope) if f.scope is not None else None,
    }


def search(
    conn: psycopg.Connection[Any], f: InspectionFilter, limit: int = 100
) -> list[InspectionRow]:
    """Inspections, newest first."""
    rows = conn.execute(
        _SELECT + _WHERE + " ORDER BY i.at DESC, i.id DESC LIMIT %(limit)s",
        {**_params(f), "limit": limit},
    ).fetchall()
    return [InspectionRow(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class InspectorCount:
    """What one inspector did in the period: inspections (how many from the unit's code),
    units seen, items failed, hazards raised and how many of those are closed."""

    inspector: str
    inspections: int
    scanned: int
    units: int
    failed_items: int
    hazards: int
    hazards_closed: int


def by_inspector(conn: psycopg.Connection[Any], f: InspectionFilter) -> list[InspectorCount]:
    """Counts per inspector, the busiest first."""
    rows = conn.execute(
        "WITH i AS (SELECT i.* FROM inspections i JOIN units u ON u.id = i.unit_id"  # noqa: S608 (fixed text)
        + _WHERE
        + ") SELECT i.inspector, count(*)::int, count(*) FILTER (WHERE i.scanned)::int,"
        " count(DISTINCT i.unit_id)::int, coalesce(sum(i.failed), 0)::int,"
        " coalesce(sum(cardinality(i.hazard_ids)), 0)::int,"
        " (SELECT count(*) FROM hazards h, i AS j WHERE j.inspector = i.inspector"
        "  AND h.id = ANY(j.hazard_ids) AND h.state = 'closed')::int"
        " FROM i GROUP BY i.inspector ORDER BY count(*) DESC, i.inspector",
        _params(f),
    ).fetchall()
    return [InspectorCount(*r) for r in rows]
