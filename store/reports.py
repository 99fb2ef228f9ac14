"""What a period's report reads: per unit, its alerts, verifications, forwardings to 119,
hazards and grade changes; and false alarms by cause per district."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

FAULT_RULES = ("panel_fault", "main_power_fault", "backup_power_fault")

_UNITS = """
WITH u AS (
    SELECT id, name, district FROM units
    WHERE (%(district)s::text IS NULL OR district = %(district)s)
      AND (%(scope)s::text[] IS NULL OR id = ANY(%(scope)s))
), a AS (
    SELECT unit_id, count(*)::int AS alerts,
           count(*) FILTER (WHERE rule_id = 'fire_alarm')::int AS fire_alarms,
           count(*) FILTER (WHERE verification = 'confirmed_fire')::int AS confirmed_fires,
           count(*) FILTER (WHERE verification = 'false_alarm')::int AS false_alarms,
           count(*) FILTER (WHERE needs_verification AND verification IS NULL)::int AS unverified,
           count(*) FILTER (WHERE rule_id = ANY(%(faults)s))::int AS faults,
           count(*) FILTER (WHERE rule_id = 'device_offline')::int AS offline
    FROM alerts WHERE opened_at >= %(from)s AND opened_at < %(to)s AND unit_id IN (SELECT id FROM u)
    GROUP BY unit_id
), f AS (
    SELECT a.unit_id, count(DISTINCT a.id)::int AS forwarded
    FROM notifications n JOIN alerts a ON a.id = n.alert_id
    WHERE n.channel = 'fire_119' AND n.state IN ('sent', 'delivered')
      AND n.sent_at >= %(from)s AND n.sent_at < %(to)s
    GROUP BY a.unit_id
), h AS (
    SELECT unit_id,
           count(*) FILTER (WHERE found_at >= %(from)s AND found_at < %(to)s)::int AS found,
           count(*) FILTER (WHERE closed_at >= %(from)s AND closed_at < %(to)s)::int AS closed,
           count(*) FILTER (WHERE found_at < %(to)s AND deadline < %(to)s
                            AND (closed_at IS NULL OR closed_at >= %(to)s))::int AS overdue
    FROM hazards WHERE unit_id IN (SELECT id FROM u) GROUP BY unit_id
), g AS (
    SELECT unit_id, count(*)::int AS changes FROM unit_grade_changes
    WHERE at >= %(from)s AND at < %(to)s AND unit_id IN (SELECT id FROM u) GROUP BY unit_id
)
SELECT u.id, u.name, u.district, cur.grade,
       coalesce(a.alerts, 0), coalesce(a.fire_alarms, 0), coalesce(a.confirmed_fires, 0),
       coalesce(a.false_alarms, 0), coalesce(a.unverified, 0), coalesce(f.forwarded, 0),
       coalesce(a.faults, 0), coalesce(a.offline, 0), coalesce(h.found, 0),
       coalesce(h.closed, 0), coalesce(h.overdue, 0), coalesce(g.changes, 0)
FROM u
LEFT JOIN a ON a.unit_id = u.id LEFT JOIN f ON f.unit_id = u.id
LEFT JOIN h ON h.unit_id = u.id LEFT JOIN g ON g.unit_id = u.id
LEFT JOIN unit_grades cur ON cur.unit_id = u.id
ORDER BY u.district, u.id
"""


@dataclass(frozen=True, slots=True)
class UnitPeriod:
    """One unit over a period (its grade: the current one)."""

    unit_id: str
    name: str
    district: str
    grade: str | None
    alerts: int
    fire_alarms: int
    confirmed_fires: int
    false_alarms: int
    unverified: int
    forwarded_119: int
    faults: int
    offline: int
    hazards_found: int
    hazards_closed: int
    hazards_overdue: int
    grade_changes: int


def unit_periods(
    conn: psycopg.Connection[Any],
    start: dt.datetime,
    end: dt.datetime,
    *,
    district: str | None = None,
    scope: Sequence[str] | None = None,
) -> list[UnitPeriod]:
    """Every unit (of a district, within a scope) over [start, end), by district and id."""
    rows = conn.execute(
        _UNITS,
        {
            "from": start,
            "to": end,
            "district": district,
            "scope": None if scope is None else list(scope),
            "faults": list(FAULT_RULES),
        },
    ).fetchall()
    return [UnitPeriod(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class CauseCount:
    """False alarms of a district with one cause over a period."""

    district: str
    cause: str
    count: int


def false_alarm_causes(
    conn: psycopg.Connection[Any],
    start: dt.datetime,
    end: dt.datetime,
    *,
    district: str | None = None,
    scope: Sequence[str] | None = None,
) -> list[CauseCount]:
    """False alarms opened in [start, end) by district and cause, most first."""
    units = None if scope is None else list(scope)
    rows = conn.execute(
        "SELECT u.district, coalesce(a.false_alarm_cause, 'unknown'), count(*)::int"
        " FROM alerts a JOIN units u ON u.id = a.unit_id"
        " WHERE a.verification = 'false_alarm' AND a.opened_at >= %s AND a.opened_at < %s"
        " AND (%s::text IS NULL OR u.district = %s)"
        " AND (%s::text[] IS NULL OR u.id = ANY(%s))"
        " GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2",
        (start, end, district, district, units, units),
    ).fetchall()
    return [CauseCount(str(r[0]), str(r[1]), int(r[2])) for r in rows]
