"""Readings go straight in by COPY; a batch that repeats stored ones is deduplicated instead."""

from __future__ import annotations

import time

import numpy as np
import psycopg

from firesentry.embedded import Endpoints
from store.partitions import PartitionManager, day_of_ms
from store.telemetry import TelemetryWriter


def _batch(ts: list[int], values: list[float]) -> tuple[np.ndarray, ...]:
    n = len(ts)
    return (
        np.ones(n, np.int32),
        np.full(n, 14, np.int16),
        np.array(ts, np.int64),
        np.array(values, np.float64),
    )


def test_copy_straight_in_then_a_redelivery_keeps_the_first_values(db: Endpoints) -> None:
    """A fresh batch is written directly; a redelivered one (half stored already) adds only
    the new readings, keeps the stored values, and the rest of its transaction commits."""
    now = int(time.time() * 1000)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO devices (id, unit_id, type) VALUES ('d', 'u', 'water_level')")
        pm = PartitionManager()
        pm.load(conn)
        pm.ensure(conn, {day_of_ms(now)})
        w = TelemetryWriter()
        with conn.transaction():
            assert w.write_readings(conn, *_batch([now, now + 1], [1.0, 2.0])) == 2
        assert (w.direct, w.deduplicated) == (1, 0)
        with conn.transaction():
            conn.execute("UPDATE devices SET model = 'same transaction' WHERE id = 'd'")
            assert w.write_readings(conn, *_batch([now + 1, now + 2], [9.0, 3.0])) == 1
        assert (w.direct, w.deduplicated) == (1, 1)
        rows = conn.execute("SELECT value FROM telemetry ORDER BY ts").fetchall()
        assert [r[0] for r in rows] == [1.0, 2.0, 3.0], "the stored reading is not overwritten"
        model = conn.execute("SELECT model FROM devices WHERE id = 'd'").fetchone()
        assert model == ("same transaction",), "the savepoint undid only the COPY"
