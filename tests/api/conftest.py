"""API fixtures: a seeded database, tokens of every role, and the app on a test server."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from api.state import ApiOptions
from devices.catalog import METRIC_BY_NAME, DeviceType
from firesentry.embedded import Endpoints
from rules.loader import load_rules
from store import alert_plan
from store import alerts as store_alerts
from store import registry as reg
from store import tokens as store_tokens
from store.partitions import PartitionManager

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Seeded:
    """What the seed put in the database."""

    dsn: str
    alerts: dict[str, int]
    tokens: dict[str, str]


def open_alert(
    conn: psycopg.Connection[Any],
    device_num: int,
    unit_id: str,
    rule_id: str,
    severity: str,
    at: dt.datetime,
    *,
    value: float | None = None,
    fire: bool = False,
) -> int:
    """Open an alert as the engine does (row + history line) and return its id."""
    (alert_id,) = alert_plan.reserve_ids(conn, 1)
    row = store_alerts.AlertView(
        alert_id,
        device_num,
        unit_id,
        rule_id,
        severity,
        "firing",
        None if fire else "residual_current_ma",
        None if fire else 300.0,
        value,
        value,
        at,
        at,
        1,
        None,
        f"{rule_id} at {unit_id}",
        f"{rule_id}：{unit_id}",
        fire,
        None,
        0,
        0,
        None,
        None,
        "",
        None,
        None,
        "",
        device_id="",  # read only: not written
        device_type="",
        unit_name="",
        district="",
        device_location="",
        unit_address="",
    )
    opened = alert_plan.HistoryWrite(alert_id, "opened", value)
    alert_plan.write_plan(conn, alert_plan.AlertPlan(inserts=[row], history=[opened]))
    return alert_id


def add_readings(
    conn: psycopg.Connection[Any],
    device_num: int,
    metric: str,
    rows: list[tuple[dt.datetime, float]],
) -> None:
    """Insert readings (creating the day partitions they need)."""
    pm = PartitionManager()
    pm.load(conn)
    pm.ensure(conn, {t.date() for t, _ in rows})
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry (ts, device_num, metric_id, value) VALUES (%s, %s, %s, %s)",
            [(t, device_num, METRIC_BY_NAME[metric].id, v) for t, v in rows],
        )


def seed(dsn: str) -> Seeded:
    """Two units in two districts, three devices, four alerts, an hour of readings, tokens."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Riverside Mall", district="D1", lat=30.65, lon=104.08)
        reg.add_unit(conn, "u2", "No. 3 School", district="D2", lat=30.60, lon=104.00)
        em = reg.add_device(conn, "u1-em", "u1", DeviceType.ELECTRICAL)
        utd = reg.add_device(conn, "u1-utd", "u1", DeviceType.UTD)
        wl = reg.add_device(conn, "u2-wl", "u2", DeviceType.WATER_LEVEL, heartbeat_s=60)
        reg.touch_last_seen(conn, [em], [int(NOW.timestamp() * 1000)])
        conn.execute(
            "UPDATE devices SET last_seen = now() - interval '1 hour' WHERE num = %s", (wl,)
        )
        alerts = {
            "em_major": open_alert(
                conn,
                em,
                "u1",
                "residual_current_high",
                "major",
                NOW - dt.timedelta(minutes=30),
                value=350.0,
            ),
            "fire": open_alert(
                conn,
                utd,
                "u1",
                "fire_alarm",
                "critical",
                NOW - dt.timedelta(minutes=20),
                fire=True,
            ),
            "wl_warning": open_alert(
                conn,
                wl,
                "u2",
                "tank_level_low",
                "warning",
                NOW - dt.timedelta(minutes=10),
                value=1.0,
            ),
            "old_closed": open_alert(
                conn,
                wl,
                "u2",
                "pressure_low",
                "major",
                NOW - dt.timedelta(days=3),
                value=0.05,
            ),
        }
        conn.execute(
            "UPDATE alerts SET state = 'closed', closed_at = opened_at + interval '1 hour',"
            " acknowledged_at = opened_at + interval '10 minutes' WHERE id = %s",
            (alerts["old_closed"],),
        )
        start = NOW - dt.timedelta(hours=1)
        add_readings(
            conn,
            em,
            "residual_current_ma",
            [(start + dt.timedelta(seconds=30 * i), 40.0 + (i % 10)) for i in range(120)],
        )
        add_readings(
            conn, wl, "level_m", [(start + dt.timedelta(minutes=i), 2.9) for i in range(60)]
        )
        tokens = {}
        for name, role, units in (
            ("operator", "operator", ()),
            ("analyst", "analyst", ()),
            ("admin", "admin", ()),
            ("display", "display", ()),
            ("operator_u1", "operator", ("u1",)),
            ("analyst_u2", "analyst", ("u2",)),
        ):
            _, tokens[name] = store_tokens.create_token(conn, f"Test {name}", role, units)
    return Seeded(dsn, alerts, tokens)


@pytest.fixture()
def seeded(db: Endpoints) -> Seeded:
    """The test database with the seed in it."""
    return seed(db.dsn())


def api_options(db: Endpoints, **overrides: Any) -> ApiOptions:
    """Options of an app on the test services (fast feed polling)."""
    values: dict[str, Any] = {
        "dsn": db.dsn(),
        "mqtt_host": db.mqtt_host,
        "mqtt_port": db.mqtt_port,
        "rules": load_rules(None),
        "pool_max": 4,
        "stream_poll_s": 0.1,
        "stream_keepalive_s": 1.0,
    }
    return ApiOptions(**{**values, **overrides})


@pytest.fixture()
async def client(db: Endpoints, seeded: Seeded) -> AsyncIterator[TestClient[Any, Any]]:
    """A test client of the app, served on a free port."""
    async with TestClient(TestServer(build_app(api_options(db)))) as c:
        yield c


async def eventually(check: Callable[[], Any], within_s: float, what: str) -> Any:
    """Try check (plain or async) until it returns something truthy; fail after within_s."""
    deadline = time.monotonic() + within_s
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what} ({found!r})")
        # Yield to the server under test, which runs on this same event loop.
        await asyncio.sleep(0.05)


def auth(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}
