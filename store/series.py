"""Time series reads: bucketed aggregates (one function for both back ends) and a streamed export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from store.partitions import is_partitioned

# Buckets start at whole minutes, hours and days (UTC) on both back ends.
ORIGIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One bucket of one device's metric (a raw reading is a bucket of one)."""

    device_id: str
    t: dt.datetime
    min: float
    max: float
    avg: float
    last: float
    count: int


def device_nums(conn: psycopg.Connection[Any], device_ids: Sequence[str]) -> dict[str, int]:
    """Internal numbers of the devices that exist."""
    rows = conn.execute(
        "SELECT id, num FROM devices WHERE id = ANY(%s)", (list(device_ids),)
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def bucket_function(conn: psycopg.Connection[Any]) -> str:
    """`date_bin` on native partitions, `time_bucket` when telemetry is a TimescaleDB hypertable."""
    return "date_bin" if is_partitioned(conn) else "time_bucket"


def telemetry_series(
    conn: psycopg.Connection[Any],
    device_ids: Sequence[str],
    metric_id: int,
    start: dt.datetime,
    end: dt.datetime,
    bucket: dt.timedelta | None,
    *,
    limit: int = 10_000,
    function: str | None = None,
) -> tuple[list[SeriesPoint], bool]:
    """Readings of a metric in [start, end) per device, raw or as min/max/avg/last per bucket.

    Returns the points (by device, then time) and whether `limit` cut them short. `function`
    is what bucket_function() says (looked up when None); both answer the same.
    """
    nums = list(device_nums(conn, device_ids).values())
    params: dict[str, Any] = {
        "nums": nums,
        "metric": metric_id,
        "start": start,
        "end": end,
        "limit": limit + 1,
        "width": bucket,
        "origin": ORIGIN,
    }
    where = sql.SQL(
        "t.device_num = ANY(%(nums)s) AND t.metric_id = %(metric)s"
        " AND t.ts >= %(start)s AND t.ts < %(end)s"
    )
    if bucket is None:
        query = sql.SQL(
            "SELECT d.id, t.ts, t.value, t.value, t.value, t.value, 1"
            " FROM telemetry t JOIN devices d ON d.num = t.device_num WHERE {}"
            " ORDER BY d.id, t.ts LIMIT %(limit)s"
        ).format(where)
    else:
        fn = function or bucket_function(conn)
        if fn not in ("date_bin", "time_bucket"):
            raise ValueError(f"unknown bucket function {fn!r}")
        query = sql.SQL(
            "SELECT d.id, {fn}(%(width)s, t.ts, %(origin)s) AS b, min(t.value), max(t.value),"
            " avg(t.value), (array_agg(t.value ORDER BY t.ts DESC))[1], count(*)"
            " FROM telemetry t JOIN devices d ON d.num = t.device_num WHERE {where}"
            " GROUP BY d.id, b ORDER BY d.id, b LIMIT %(limit)s"
        ).format(fn=sql.Identifier(fn), where=where)
    rows = conn.execute(query, params).fetchall() if nums else []
    points = [
        SeriesPoint(str(r[0]), r[1], float(r[2]), float(r[3]), float(r[4]), float(r[5]), int(r[6]))
        for r in rows[:limit]
    ]
    return points, len(rows) > limit


def iter_readings(
    conn: psycopg.Connection[Any],
    device_ids: Sequence[str],
    metric_ids: Sequence[int] | None,
    start: dt.datetime,
    end: dt.datetime,
    chunk: int = 5_000,
) -> Generator[list[tuple[dt.datetime, str, str, float, str]], None, None]:
    """Rows (ts, device, metric, value, unit) in chunks, read through a server-side cursor.

    Ordered as the primary key (device, metric, ts), so the first rows come at once and memory
    stays at one chunk whatever the range. The cursor lives in a transaction on `conn` until
    the iterator is exhausted or closed.
    """
    nums = list(device_nums(conn, device_ids).values())
    if not nums:
        return
    with (
        conn.transaction(),
        conn.cursor(name="firesentry_export") as cur,
    ):
        cur.itersize = chunk
        cur.execute(
            "SELECT t.ts, d.id, m.name, t.value, m.unit FROM telemetry t"
            " JOIN devices d ON d.num = t.device_num JOIN metrics m ON m.id = t.metric_id"
            " WHERE t.device_num = ANY(%s) AND (%s::smallint[] IS NULL OR t.metric_id = ANY(%s))"
            " AND t.ts >= %s AND t.ts < %s ORDER BY t.device_num, t.metric_id, t.ts",
            (nums, metric_ids, metric_ids, start, end),
        )
        while True:
            rows = cur.fetchmany(chunk)
            if not rows:
                break
            yield rows
