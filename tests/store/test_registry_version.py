"""The registry's version moves with what the engine loads, and not with liveness writes."""

from __future__ import annotations

import datetime as dt

import psycopg

from devices.catalog import DeviceType
from firesentry.embedded import Endpoints
from store import registry as reg


def test_version_moves_with_the_registry_not_with_liveness(db: Endpoints) -> None:
    """Adding a device, changing its thresholds or its unit's name bumps the version;
    last_seen and status updates (every few seconds in production) leave it alone."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        v0 = reg.registry_version(conn)
        reg.add_unit(conn, "u1", "Riverside Mall", district="D1")
        reg.add_device(conn, "em-1", "u1", DeviceType.ELECTRICAL)
        v1 = reg.registry_version(conn)
        assert v1 > v0
        num = reg.load_registry(conn).by_id["em-1"].num
        reg.touch_last_seen(conn, [num], [int(dt.datetime.now(dt.UTC).timestamp() * 1000)])
        reg.set_status(conn, {num: ("online", int(dt.datetime.now(dt.UTC).timestamp() * 1000))})
        assert reg.registry_version(conn) == v1
        conn.execute(
            "UPDATE devices SET attributes = '{\"residual_current_max_ma\": 500}' WHERE id = 'em-1'"
        )
        v2 = reg.registry_version(conn)
        conn.execute("UPDATE units SET name = 'Riverside Mall East' WHERE id = 'u1'")
        assert v1 < v2 < reg.registry_version(conn)
