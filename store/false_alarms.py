"""False alarms as operators closed them: how many per unit, device and cause."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class FalseAlarmCount:
    """The false alarms of one device with one cause (a row of the false_alarm_counts view)."""

    unit_id: str
    device_id: str
    cause: str | None
    false_alarms: int


def false_alarm_counts(conn: psycopg.Connection[Any], unit_id: str | None) -> list[FalseAlarmCount]:
    """Counts of the unit (None: of every unit), most false alarms first."""
    rows = conn.execute(
        "SELECT unit_id, device_id, cause, false_alarms FROM false_alarm_counts"
        " WHERE %(unit)s::text IS NULL OR unit_id = %(unit)s ORDER BY false_alarms DESC",
        {"unit": unit_id},
    ).fetchall()
    return [FalseAlarmCount(*r) for r in rows]
