"""Alert statistics for analysts: counts, time to acknowledge and false alarms per unit or district."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql


@dataclass(frozen=True, slots=True)
class AlertStats:
    """Alerts opened in a period, for one unit or district."""

    key: str
    name: str
    alerts: int
    critical: int
    acknowledged: int
    mean_time_to_ack_s: float | None
    fire_alarms_verified: int  # verified either way: confirmed fires plus false alarms
    confirmed_fires: int
    false_alarms: int
    false_alarm_rate: float | None


def alert_stats(
    conn: psycopg.Connection[Any],
    group: Literal["unit", "district"],
    start: dt.datetime,
    end: dt.datetime,
    scope: Sequence[str] | None = None,
) -> list[AlertStats]:
    """Per unit (or district): alerts opened in [start, end), how fast they were acknowledged,
    and of the verified fire alarms, how many were confirmed fires and how many false alarms."""
    key, name = (
        (sql.SQL("u.id"), sql.SQL("min(u.name)"))
        if group == "unit"
        else (sql.SQL("u.district"), sql.SQL("u.district"))
    )
    query = sql.SQL(
        "SELECT {key}, {name}, count(*),"
        " count(*) FILTER (WHERE a.severity = 'critical'),"
        " count(a.acknowledged_at),"
        " avg(extract(epoch FROM a.acknowledged_at - a.opened_at))"
        "   FILTER (WHERE a.acknowledged_at IS NOT NULL),"
        " count(*) FILTER (WHERE a.verification IS NOT NULL),"
        " count(*) FILTER (WHERE a.verification = 'confirmed_fire'),"
        " count(*) FILTER (WHERE a.verification = 'false_alarm')"
        " FROM alerts a JOIN units u ON u.id = a.unit_id"
        " WHERE a.opened_at >= %(start)s AND a.opened_at < %(end)s"
        " AND (%(scope)s::text[] IS NULL OR a.unit_id = ANY(%(scope)s))"
        " GROUP BY {key} ORDER BY count(*) DESC, {key}"
    ).format(key=key, name=name)
    rows = conn.execute(
        query, {"start": start, "end": end, "scope": None if scope is None else list(scope)}
    ).fetchall()
    return [
        AlertStats(
            str(r[0]),
            str(r[1]),
            int(r[2]),
            int(r[3]),
            int(r[4]),
            None if r[5] is None else round(float(r[5]), 3),
            int(r[6]),
            int(r[7]),
            int(r[8]),
            round(int(r[8]) / int(r[6]), 4) if r[6] else None,
        )
        for r in rows
    ]
