"""Apply the ordered SQL files in migrations/ once each, under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import psycopg

from devices.catalog import METRICS

# Any constant works; it only has to be the same for every firesentry process.
_LOCK_KEY = 0x66697265  # "fire"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(native|timescale))?\.sql$")

Backend = Literal["native", "timescale"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file (or its back-end variant)."""

    version: int
    name: str
    variant: str | None
    sql: str


def available_migrations(backend: Backend) -> list[Migration]:
    """List the migrations for a back end, in order, picking the right variant of each."""
    found: dict[int, Migration] = {}
    for entry in resources.files("migrations").iterdir():
        m = _NAME.match(entry.name)
        if not m:
            continue
        version, name, variant = int(m.group(1)), m.group(2), m.group(3)
        if variant is not None and variant != backend:
            continue
        if version in found:
            raise RuntimeError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, name, variant, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def timescale_available(conn: psycopg.Connection[Any]) -> bool:
    """Tell whether the timescaledb extension is installed and preloaded on this server."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " current_setting('shared_preload_libraries')"
    ).fetchone()
    return bool(row and row[0] and "timescaledb" in str(row[1]))


def current_backend(conn: psycopg.Connection[Any]) -> Backend | None:
    """Return the back end the schema was created with, or None before migrations."""
    row = (
        conn.execute(
            "SELECT variant FROM schema_migrations WHERE variant IS NOT NULL ORDER BY version LIMIT 1"
        ).fetchone()
        if _has_table(conn)
        else None
    )
    if row is None:
        return None
    return "timescale" if row[0] == "timescale" else "native"


def _has_table(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def migrate(dsn: str, prefer: Literal["auto", "native", "timescale"] = "auto") -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    applied: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, variant text,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            backend = current_backend(conn)
            if backend is None:
                if prefer == "timescale" and not timescale_available(conn):
                    raise RuntimeError(
                        "storage.backend is timescale but the timescaledb extension is not "
                        "installed and in shared_preload_libraries"
                    )
                use_ts = prefer == "timescale" or (prefer == "auto" and timescale_available(conn))
                backend = "timescale" if use_ts else "native"
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for mig in available_migrations(backend):
                if mig.version in done:
                    continue
                with conn.transaction():
                    conn.execute(mig.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.variant),
                    )
                applied.append(
                    f"{mig.version:04d}_{mig.name}" + (f".{mig.variant}" if mig.variant else "")
                )
            with conn.transaction():
                sync_catalog(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def sync_catalog(conn: psycopg.Connection[Any]) -> None:
    """Upsert the metric catalogue so analysts can join metric names."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO metrics (id, name, unit) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit",
            [(m.id, m.name, m.unit) for m in METRICS],
        )
