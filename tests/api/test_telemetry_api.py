"""Analyst endpoints: buckets through one store function, the streamed CSV, statistics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from firesentry.embedded import Endpoints
from store import series
from store.migrate import timescale_available
from tests.api.conftest import NOW, Seeded, add_readings, api_options, auth

Client = TestClient[Any, Any]


async def _get(client: Client, seeded: Seeded, query: str, role: str = "analyst") -> Any:
    r = await client.get(f"/api/v1/telemetry?{query}", headers=auth(seeded.tokens[role]))
    return r.status, await r.json()


async def test_minute_buckets_give_min_max_avg_last(client: Client, seeded: Seeded) -> None:
    """bucket=1m aggregates the two readings of each minute; raw returns each reading."""
    status, body = await _get(client, seeded, "device=u1-em&metric=residual_current_ma&bucket=1m")
    assert status == 200 and body["unit"] == "mA" and not body["truncated"]
    (s,) = body["series"]
    points = s["points"]
    assert len(points) in (60, 61) and sum(p["count"] for p in points) == 120
    full = next(p for p in points if p["count"] == 2)
    assert full["min"] <= full["avg"] <= full["max"]
    assert full["last"] == full["max"]  # the seed's values rise within each minute
    status, raw = await _get(
        client, seeded, "device=u1-em&metric=residual_current_ma&bucket=raw&limit=5"
    )
    assert len(raw["series"][0]["points"]) == 5 and raw["truncated"]
    status, hourly = await _get(client, seeded, "unit=u2&metric=level_m&bucket=1h")
    assert [x["device_id"] for x in hourly["series"]] == ["u2-wl"]
    assert sum(p["count"] for p in hourly["series"][0]["points"]) == 60


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("device=u1-em&metric=smoke_ppm", "unknown metric 'smoke_ppm'"),
        ("metric=level_m", "exactly one of 'device' and 'unit'"),
        ("device=u1-em&unit=u1&metric=level_m", "exactly one of 'device' and 'unit'"),
        ("device=u1-em&metric=level_m", "does not report level_m"),
        ("device=u1-em&metric=level_m&bucket=5m", "'raw', '1m', '1h' or '1d'"),
        (
            "device=u1-em&metric=level_m&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "choose a larger bucket",
        ),
        ("device=u1-em&metric=residual_current_ma&from=2099-01-01T00:00:00Z", "must be before"),
    ],
)
async def test_bad_telemetry_queries_are_400(
    client: Client, seeded: Seeded, query: str, words: str
) -> None:
    """Unknown metrics, ambiguous sources, bad buckets and ranges are 400s that say why."""
    status, body = await _get(client, seeded, query)
    assert status == 400, body
    assert words in body["message"]


def test_date_bin_and_time_bucket_agree(services: Endpoints, seeded: Seeded) -> None:
    """The store function answers the same with date_bin and (where installed) time_bucket."""
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        assert series.bucket_function(conn) == "date_bin"
        args = (["u1-em"], 3, NOW - dt.timedelta(hours=2), NOW, dt.timedelta(minutes=1))
        native, _ = series.telemetry_series(conn, *args, function="date_bin")
        assert all(p.t.second == 0 for p in native)
        if not timescale_available(conn):
            pytest.skip("timescaledb is not installed and preloaded here: time_bucket not compared")
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        bucketed, _ = series.telemetry_series(conn, *args, function="time_bucket")
        assert bucketed == native


def _backend_query(dsn: str, pid: int) -> tuple[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def _many_readings(seeded: Seeded, n: int) -> None:
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        num = conn.execute("SELECT num FROM devices WHERE id = 'u1-em'").fetchone()
        assert num is not None
        start = NOW - dt.timedelta(hours=5)
        add_readings(
            conn, num[0], "temp_c_1", [(start + dt.timedelta(seconds=i), 30.0) for i in range(n)]
        )


def test_export_reads_through_a_server_side_cursor(seeded: Seeded) -> None:
    """The export's rows come chunk by chunk from a named cursor, never all at once."""
    _many_readings(seeded, 3_000)
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        chunks = series.iter_readings(
            conn, ["u1-em"], None, NOW - dt.timedelta(hours=6), NOW + dt.timedelta(hours=1), 500
        )
        first = next(chunks)
        assert len(first) == 500
        state, query = _backend_query(seeded.dsn, conn.info.backend_pid)
        assert state == "idle in transaction" and query.startswith("FETCH FORWARD 500")
        total = len(first) + sum(len(c) for c in chunks)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert total == 120 + 3_000


async def test_csv_is_streamed(db: Endpoints, seeded: Seeded) -> None:
    """GET /telemetry.csv is a chunked stream (no Content-Length) holding every reading once."""
    _many_readings(seeded, 12_000)
    app = build_app(api_options(db, export_chunk=500))
    async with TestClient(TestServer(app)) as client:
        r = await client.get(
            "/api/v1/telemetry.csv?device=u1-em&from="
            + (NOW - dt.timedelta(hours=6)).isoformat().replace("+", "%2B"),
            headers=auth(seeded.tokens["analyst"]),
        )
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in r.headers["Content-Disposition"]
        assert "Content-Length" not in r.headers
        assert r.headers["Transfer-Encoding"] == "chunked"
        body = (await r.read()).decode()
    lines = body.splitlines()
    assert lines[0] == "ts,device_id,metric,value,unit"
    assert lines[1].split(",")[1:3] == ["u1-em", "residual_current_ma"]
    assert len(lines) == 1 + 120 + 12_000 and len(set(lines)) == len(lines)
    assert lines[-1].split(",")[2:] == ["temp_c_1", "30.0", "°C"]


async def test_csv_filters_metrics_and_refuses_operators(client: Client, seeded: Seeded) -> None:
    """metric= limits the export; operators may not export (403); a bad metric is a 400."""
    h = auth(seeded.tokens["admin"])
    r = await client.get("/api/v1/telemetry.csv?unit=u2&metric=level_m", headers=h)
    lines = (await r.text()).splitlines()
    assert len(lines) == 61 and all(",level_m," in x for x in lines[1:])
    r = await client.get("/api/v1/telemetry.csv?unit=u2&metric=nope", headers=h)
    assert r.status == 400
    r = await client.get("/api/v1/telemetry.csv?unit=u2", headers=auth(seeded.tokens["operator"]))
    assert r.status == 403


async def test_alert_stats_by_unit_and_district(client: Client, seeded: Seeded) -> None:
    """Counts, mean time to acknowledge and false-alarm rate per unit or district."""
    h = auth(seeded.tokens["operator"])
    fire = seeded.alerts["fire"]
    await client.post(f"/api/v1/alerts/{fire}/ack", headers=h)
    await client.post(
        f"/api/v1/alerts/{fire}/close",
        headers=h,
        json={"verification": "false_alarm", "cause": "test"},
    )
    a = auth(seeded.tokens["analyst"])
    body = await (await client.get("/api/v1/stats/alerts?group=unit", headers=a)).json()
    rows = {r["key"]: r for r in body["rows"]}
    assert rows["u1"]["alerts"] == 2 and rows["u1"]["critical"] == 1
    assert rows["u1"]["fire_alarms_verified"] == 1 and rows["u1"]["false_alarm_rate"] == 1.0
    assert rows["u1"]["mean_time_to_ack_s"] >= 20 * 60
    assert rows["u2"]["mean_time_to_ack_s"] == 600.0 and rows["u2"]["false_alarm_rate"] is None
    body = await (await client.get("/api/v1/stats/alerts?group=district", headers=a)).json()
    assert [(r["key"], r["alerts"]) for r in body["rows"]] == [("D1", 2), ("D2", 2)]
    r = await client.get("/api/v1/stats/alerts?group=grid", headers=a)
    assert r.status == 400
