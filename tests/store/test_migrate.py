"""Migrations: applied once each, idempotent, and the right back end for the server."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Literal

import numpy as np
import psycopg
import pytest

from firesentry.embedded import Endpoints
from store.migrate import available_migrations, migrate
from store.partitions import PartitionManager, apply_timescale_retention, day_of_ms
from store.telemetry import TelemetryWriter

REQUIRED = {
    "units",
    "devices",
    "contacts",
    "telemetry",
    "events",
    "alerts",
    "alert_events",
    "notifications",
    "rejected_messages",
    "schema_migrations",
    "metrics",
}


@pytest.fixture()
def empty_db(services: Endpoints) -> Iterator[Endpoints]:
    name = "fs_empty_migrate"
    with psycopg.connect(services.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield dataclasses.replace(services, db_name=name)
    with psycopg.connect(services.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def names(backend: Literal["native", "timescale"]) -> list[str]:
    """The names migrate() reports for every migration of a back end, in order."""
    return [
        f"{m.version:04d}_{m.name}" + (f".{m.variant}" if m.variant else "")
        for m in available_migrations(backend)
    ]


def test_migrations_are_idempotent(empty_db: Endpoints) -> None:
    """Running migrate twice applies everything once, then nothing."""
    first = migrate(empty_db.dsn())
    assert first == names("native")
    assert first[:3] == ["0001_core", "0002_timeseries.native", "0003_registry"]
    assert migrate(empty_db.dsn()) == []
    with psycopg.connect(empty_db.dsn()) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        assert tables >= REQUIRED
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(first),)
        assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] > 10  # type: ignore[index]


def test_each_version_has_one_variant_per_backend() -> None:
    """Both back ends get the same ordered versions."""
    native = [m.version for m in available_migrations("native")]
    timescale = [m.version for m in available_migrations("timescale")]
    assert native == timescale == sorted(native)


def test_native_partitions_are_created_for_late_readings(db: Endpoints) -> None:
    """Readings from several days (store-and-forward) land in day partitions made on demand."""
    days_ms = [
        int(dt.datetime(2026, 11, d, 12, tzinfo=dt.UTC).timestamp() * 1000) for d in (1, 2, 20)
    ]
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO devices (id, unit_id, type) VALUES ('d', 'u', 'water_level')")
        pm = PartitionManager()
        pm.load(conn)
        pm.ensure(conn, {day_of_ms(t) for t in days_ms})
        w = TelemetryWriter()
        with conn.transaction():
            n = w.write_readings(
                conn,
                np.array([1, 1, 1], np.int32),
                np.array([14, 14, 14], np.int16),
                np.array(days_ms, np.int64),
                np.array([1.0, 2.0, 3.0]),
            )
        assert n == 3
        with conn.transaction():
            again = w.write_readings(
                conn,
                np.array([1], np.int32),
                np.array([14], np.int16),
                np.array(days_ms[:1], np.int64),
                np.array([9.0]),
            )
        assert again == 0
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry'::regclass"
        ).fetchone()
        assert parts == (3,)
        expired = pm.drop_expired(conn, dt.date(2026, 11, 25), keep_days=10)
        assert expired == [
            "events_p20261101",
            "events_p20261102",
            "telemetry_p20261101",
            "telemetry_p20261102",
        ]
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (1,)


@pytest.fixture(scope="module")
def timescale_services() -> Iterator[Endpoints]:
    """A second private cluster with timescaledb preloaded, when the extension is installed."""
    import tempfile
    from pathlib import Path

    from firesentry.embedded import EmbeddedServices, find_pg_bin, timescaledb_installed

    if not timescaledb_installed(find_pg_bin()):
        pytest.skip(
            "timescaledb is not installed for this PostgreSQL; the native back end is "
            "tested instead (build TimescaleDB 2.28 by hand to run this)"
        )
    root = Path(tempfile.mkdtemp(prefix="firesentry-tsdb-"))
    svc = EmbeddedServices(root, durable=False, timescaledb=True)
    try:
        yield svc.up()
    finally:
        svc.destroy()


def test_timescale_hypertables_and_dedup(timescale_services: Endpoints) -> None:
    """On TimescaleDB telemetry and events are hypertables, and redelivered rows are skipped."""
    ep = timescale_services
    assert migrate(ep.dsn()) == []  # `up` migrated it, as the schema owner
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        done = conn.execute(
            "SELECT version, name, variant FROM schema_migrations ORDER BY version"
        ).fetchall()
        assert [f"{v:04d}_{n}" + (f".{x}" if x else "") for v, n, x in done] == names("timescale")
    with psycopg.connect(ep.app_dsn(), autocommit=True) as conn:
        # The engine's role sets retention through the owner's function, not as an owner.
        apply_timescale_retention(conn, 30)
        hypertables = {
            r[0]
            for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables"
            ).fetchall()
        }
        assert hypertables == {"telemetry", "events"}
        conn.execute("INSERT INTO units (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO devices (id, unit_id, type) VALUES ('d', 'u', 'water_level')")
        w = TelemetryWriter()
        ts = np.array([1_767_225_600_000, 1_767_312_000_000], np.int64)
        for expected in (2, 0):
            with conn.transaction():
                n = w.write_readings(
                    conn,
                    np.array([1, 1], np.int32),
                    np.array([14, 14], np.int16),
                    ts,
                    np.array([1.0, 2.0]),
                )
            assert n == expected


def test_writer_survives_a_rolled_back_batch(db: Endpoints) -> None:
    """A batch whose transaction rolls back does not leave the writer without its staging table."""
    ts = np.array([int(dt.datetime.now(dt.UTC).timestamp() * 1000)], np.int64)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO devices (id, unit_id, type) VALUES ('d', 'u', 'water_level')")
        pm = PartitionManager()
        pm.ensure(conn, {day_of_ms(int(ts[0]))})
        w = TelemetryWriter()
        with pytest.raises(RuntimeError), conn.transaction():
            w.write_readings(
                conn, np.array([1], np.int32), np.array([14], np.int16), ts, np.array([1.0])
            )
            raise RuntimeError("the batch failed after the COPY")
        w.prepare(conn)
        with conn.transaction():
            n = w.write_readings(
                conn, np.array([1], np.int32), np.array([14], np.int16), ts, np.array([1.0])
            )
        assert n == 1
