"""Units as the control room sees them: liveness of their devices and their open alerts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from store.registry import DeviceView

_DEVICE_COLUMNS = ", ".join(DeviceView.__dataclass_fields__)
_SEVERITY_RANK = (
    "CASE a.severity WHEN 'critical' THEN 1 WHEN 'major' THEN 2 WHEN 'warning' THEN 3 ELSE 4 END"
)


@dataclass(frozen=True, slots=True)
class UnitSummary:
    """A unit with the counts an overview needs."""

    id: str
    name: str
    address: str
    district: str
    grid: str
    lat: float | None
    lon: float | None
    category: str
    devices: int
    online: int
    offline: int
    unknown: int
    open_alerts: int
    worst_severity: str | None
    grade: str | None  # None until the unit is first graded
    grade_score: float | None
    grade_since: dt.datetime | None
    grade_reasons: list[dict[str, Any]]


_UNITS = f"""
SELECT u.id, u.name, u.address, u.district, u.grid, u.lat, u.lon, u.category,
       coalesce(dv.n, 0), coalesce(dv.online, 0), coalesce(dv.offline, 0), coalesce(dv.unknown, 0),
       coalesce(al.n, 0), al.worst, g.grade, g.score, g.since, coalesce(g.reasons, '[]'::jsonb)
FROM units u
LEFT JOIN unit_grades g ON g.unit_id = u.id
LEFT JOIN (
    SELECT unit_id, count(*) AS n, count(*) FILTER (WHERE status = 'online') AS online,
           count(*) FILTER (WHERE status = 'offline') AS offline,
           count(*) FILTER (WHERE status = 'unknown') AS unknown
    FROM device_liveness GROUP BY unit_id
) dv ON dv.unit_id = u.id
LEFT JOIN (
    SELECT a.unit_id, count(*) AS n,
           (array_agg(a.severity ORDER BY {_SEVERITY_RANK}))[1] AS worst
    FROM alerts a WHERE a.state <> 'closed' GROUP BY a.unit_id
) al ON al.unit_id = u.id
WHERE (%(scope)s::text[] IS NULL OR u.id = ANY(%(scope)s))
  AND (%(unit)s::text IS NULL OR u.id = %(unit)s)
  AND (%(district)s::text IS NULL OR u.district = %(district)s)
ORDER BY u.district, u.id
"""  # noqa: S608 (a fixed CASE expression, no input)


def list_units(
    conn: psycopg.Connection[Any],
    scope: Sequence[str] | None = None,
    *,
    unit_id: str | None = None,
    district: str | None = None,
) -> list[UnitSummary]:
    """Units (within scope) by district and id, with device liveness and open-alert counts."""
    rows = conn.execute(
        _UNITS,
        {
            "scope": None if scope is None else list(scope),
            "unit": unit_id,
            "district": district,
        },
    ).fetchall()
    return [UnitSummary(*r) for r in rows]


def list_devices(
    conn: psycopg.Connection[Any],
    scope: Sequence[str] | None = None,
    *,
    unit_id: str | None = None,
    status: str | None = None,
    device_type: str | None = None,
) -> list[DeviceView]:
    """Devices (within scope) with their computed status, by unit and id."""
    rows = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM device_liveness"  # noqa: S608 (fixed column list)
        " WHERE (%(scope)s::text[] IS NULL OR unit_id = ANY(%(scope)s))"
        " AND (%(unit)s::text IS NULL OR unit_id = %(unit)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " AND (%(type)s::text IS NULL OR type = %(type)s) ORDER BY unit_id, id",
        {
            "scope": None if scope is None else list(scope),
            "unit": unit_id,
            "status": status,
            "type": device_type,
        },
    ).fetchall()
    return [DeviceView(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class UnitCodeRow:
    """A unit's identity for its QR code and notice, with its grade."""

    id: str
    name: str
    address: str
    district: str
    qr_token: str
    grade: str | None
    grade_since: dt.datetime | None
    reasons: list[dict[str, Any]]
    # What its public page shows besides its name (address, grade, emergency_contact).
    public_fields: list[str]
    public_contact: str


def unit_codes(
    conn: psycopg.Connection[Any],
    scope: Sequence[str] | None = None,
    *,
    unit_id: str | None = None,
    district: str | None = None,
    qr_token: str | None = None,
) -> list[UnitCodeRow]:
    """Units (within scope; one by id or by its code's token, or a district's) by id."""
    rows = conn.execute(
        "SELECT u.id, u.name, u.address, u.district, u.qr_token, g.grade, g.since,"
        " coalesce(g.reasons, '[]'::jsonb), u.public_fields, u.public_contact FROM units u"
        " LEFT JOIN unit_grades g ON g.unit_id = u.id"
        " WHERE (%(scope)s::text[] IS NULL OR u.id = ANY(%(scope)s))"
        " AND (%(unit)s::text IS NULL OR u.id = %(unit)s)"
        " AND (%(district)s::text IS NULL OR u.district = %(district)s)"
        " AND (%(token)s::text IS NULL OR u.qr_token = %(token)s) ORDER BY u.id",
        {
            "scope": None if scope is None else list(scope),
            "unit": unit_id,
            "district": district,
            "token": qr_token,
        },
    ).fetchall()
    return [UnitCodeRow(*r) for r in rows]
