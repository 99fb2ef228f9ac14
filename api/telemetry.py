"""Analyst endpoints: bucketed time series, the streamed CSV export, alert statistics."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import asdict
from typing import Any

import psycopg
import structlog
from aiohttp import web

from api import exports
from api.auth import Permission
from api.models import (
    BUCKETS,
    AlertStatsOut,
    ExportQuery,
    Point,
    Series,
    StatsOut,
    StatsQuery,
    TelemetryOut,
    TelemetryQuery,
)
from api.routing import PREFIX, ApiError, Call, Route, json_response, not_found
from devices.catalog import METRIC_BY_NAME, DeviceType, Metric
from store import registry as store_registry
from store import series as store_series
from store import stats as store_stats
from store import units as store_units

log = structlog.get_logger("api.export")
DEFAULT_SPAN = dt.timedelta(hours=24)


def _range(
    q: TelemetryQuery | ExportQuery | StatsQuery, span: dt.timedelta
) -> tuple[dt.datetime, dt.datetime]:
    try:
        return q.resolved(span)
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


def _sources(
    conn: psycopg.Connection[Any], call: Call, device: str | None, unit: str | None
) -> list[store_registry.DeviceView]:
    """The devices a query names, within the caller's units (404 / 403 otherwise)."""
    who = call.who
    if device is not None:
        d = store_registry.get_device(conn, device)
        if d is None or not who.sees_unit(d.unit_id):
            raise not_found(f"device {device}")
        return [d]
    assert unit is not None
    if not who.sees_unit(unit):
        raise ApiError(403, "forbidden", f"this token does not cover unit {unit}")
    if not store_registry.unit_exists(conn, unit):
        raise not_found(f"unit {unit}")
    return store_units.list_devices(conn, unit_id=unit)


def _reporting(devices: list[store_registry.DeviceView], metric: Metric) -> list[str]:
    return [d.id for d in devices if DeviceType(d.type) in metric.device_types]


async def telemetry(call: Call) -> web.StreamResponse:
    """GET /telemetry."""
    tq = call.q(TelemetryQuery)
    start, end = _range(tq, DEFAULT_SPAN)
    metric = METRIC_BY_NAME[tq.metric]
    state = call.state

    def load(conn: psycopg.Connection[Any]) -> TelemetryOut:
        devices = _sources(conn, call, tq.device, tq.unit)
        ids = _reporting(devices, metric)
        if tq.device is not None and not ids:
            raise ApiError(
                400,
                "bad_request",
                f"device {tq.device} ({devices[0].type}) does not report {metric.name}",
            )
        if state.bucket_function is None:
            state.bucket_function = store_series.bucket_function(conn)
        points, truncated = store_series.telemetry_series(
            conn,
            ids,
            metric.id,
            start,
            end,
            BUCKETS.get(tq.bucket),
            limit=tq.limit,
            function=state.bucket_function,
        )
        by_device: dict[str, list[Point]] = {i: [] for i in ids}
        for p in points:
            by_device[p.device_id].append(
                Point(t=p.t, min=p.min, max=p.max, avg=p.avg, last=p.last, count=p.count)
            )
        return TelemetryOut(
            metric=metric.name,
            unit=metric.unit,
            bucket=tq.bucket,
            start=start,
            end=end,
            series=[Series(device_id=i, points=pts) for i, pts in by_device.items()],
            truncated=truncated,
        )

    return json_response(await state.db(load))


def _csv_rows(rows: list[tuple[dt.datetime, str, str, float, str]]) -> bytes:
    return exports.csv_lines(
        (ts.astimezone(dt.UTC).isoformat(timespec="milliseconds"), dev, m, v, u)
        for ts, dev, m, v, u in rows
    )


async def telemetry_csv(call: Call) -> web.StreamResponse:
    """GET /telemetry.csv: streamed through a server-side cursor, one chunk at a time.

    On the export pool and its threads, in one of the caller's export slots (429 when the
    token already uses them, 503 when all are taken); a client that stops reading for
    export_idle_timeout_s is dropped and its connection returned.
    """
    eq = call.q(ExportQuery)
    start, end = _range(eq, DEFAULT_SPAN)
    state, who = call.state, call.who
    metric_ids = [METRIC_BY_NAME[m].id for m in eq.metric] or None
    devices = await state.db(lambda conn: _sources(conn, call, eq.device, eq.unit))
    refused = state.exports.acquire(who.token_id)
    if refused is not None:
        raise ApiError(
            refused.status,
            refused.error,
            refused.message,
            headers={"Retry-After": str(exports.RETRY_AFTER_S)},
        )
    try:
        return await _export(call, eq.device or eq.unit or "", devices, metric_ids, start, end)
    finally:
        state.exports.release(who.token_id)


async def _export(
    call: Call,
    source: str,
    devices: list[store_registry.DeviceView],
    metric_ids: list[int] | None,
    start: dt.datetime,
    end: dt.datetime,
) -> web.StreamResponse:
    state = call.state
    opts = state.options
    loop = asyncio.get_running_loop()
    threads = state.export_threads
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": (
                f'attachment; filename="telemetry-{source}-{start:%Y%m%dT%H%M%SZ}.csv"'
            ),
            "Cache-Control": "no-store",
        }
    )
    conn = await loop.run_in_executor(threads, state.export_pool.getconn)
    chunks = store_series.iter_readings(
        conn, [d.id for d in devices], metric_ids, start, end, chunk=opts.export_chunk
    )
    # The chunk being fetched in a worker thread: if this task ends early (the client left,
    # the server stops), it must finish before the cursor is closed and the connection returned.
    pending: asyncio.Future[Any] | None = None
    idle = opts.export_idle_timeout_s
    try:
        await resp.prepare(call.request)
        await exports.send(call.request, resp, b"ts,device_id,metric,value,unit\n", idle)
        while True:
            pending = loop.run_in_executor(threads, next, chunks, None)
            rows = await asyncio.shield(pending)
            pending = None
            if rows is None:
                break
            await exports.send(call.request, resp, _csv_rows(rows), idle)
        await exports.send(call.request, resp, None, idle)
    except exports.ClientStalled as exc:
        log.warning("export client dropped", token=call.who.name, reason=str(exc))
    finally:
        if pending is not None:
            await asyncio.wait([pending])
        await loop.run_in_executor(threads, chunks.close)
        await loop.run_in_executor(threads, state.export_pool.putconn, conn)
    return resp


async def alert_stats(call: Call) -> web.StreamResponse:
    """GET /stats/alerts."""
    sq = call.q(StatsQuery)
    start, end = _range(sq, dt.timedelta(days=30))
    rows = await call.state.db(store_stats.alert_stats, sq.group, start, end, call.who.scope)
    return json_response(
        StatsOut(
            group=sq.group,
            start=start,
            end=end,
            rows=[AlertStatsOut.model_validate(asdict(r)) for r in rows],
        )
    )


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/telemetry",
        telemetry,
        "One metric of a device (or of each device of a unit): raw, or min/max/avg/last per bucket",
        Permission.TELEMETRY_READ,
        "telemetry",
        query=TelemetryQuery,
        response=TelemetryOut,
    ),
    Route(
        "GET",
        f"{PREFIX}/telemetry.csv",
        telemetry_csv,
        "Readings as CSV (ts, device_id, metric, value, unit), streamed whatever the range",
        Permission.TELEMETRY_EXPORT,
        "telemetry",
        query=ExportQuery,
        media="text/csv",
    ),
    Route(
        "GET",
        f"{PREFIX}/stats/alerts",
        alert_stats,
        "Per unit or district: alerts, mean time to acknowledge, false-alarm rate",
        Permission.STATS_READ,
        "telemetry",
        query=StatsQuery,
        response=StatsOut,
    ),
]
