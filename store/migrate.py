"""Apply the ordered SQL files in migrations/ once each, under an advisory lock with a timeout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import psycopg
import structlog
from psycopg import sql

from devices.catalog import METRICS
from store.roles import schema_owner, session_role

log = structlog.get_logger("firesentry.migrate")

# Any constant works; it only has to be the same for every firesentry process.
_LOCK_KEY = 0x66697265  # "fire"
# How long migrate() waits for another session's migration lock before giving up.
LOCK_TIMEOUT_S = 30.0
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(native|timescale))?\.sql$")

Backend = Literal["native", "timescale"]


class MigrationError(RuntimeError):
    """Migrations could not run; the message says why and what to do."""


class MigrationLocked(MigrationError):
    """Another session held the migration lock for longer than the timeout; the message names it."""


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
    """Tell whether the timescaledb extension is installed and preloaded on this server.

    A role that may not read shared_preload_libraries (only superusers and pg_read_all_settings
    may) sees TimescaleDB only once a superuser has created the extension in the database.
    """
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
        " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    if row is None or row[0] or not row[1]:
        return bool(row and row[0])
    try:
        preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return False
    return bool(preload and "timescaledb" in str(preload[0]))


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


def _up_to_date(conn: psycopg.Connection[Any]) -> bool:
    """Tell, without the lock and without writing, whether nothing is left to do."""
    backend = current_backend(conn)
    if backend is None:
        return False
    done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    if any(m.version not in done for m in available_migrations(backend)):
        return False
    have = set(conn.execute("SELECT id, name, unit FROM metrics").fetchall())
    return all((m.id, m.name, m.unit) in have for m in METRICS)


def lock_holders(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    """The sessions holding the migration lock: (pid, "pid N (user, application, address)")."""
    rows = conn.execute(
        "SELECT l.pid, a.usename, a.application_name, a.client_addr, a.backend_start"
        " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.database ="
        " (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 ORDER BY l.pid",
        (_LOCK_KEY >> 32, _LOCK_KEY & 0xFFFFFFFF),
    ).fetchall()
    out = []
    for pid, user, app, addr, since in rows:
        text = f"pid {pid} (user {user or '?'}, application {app or '-'!r}"
        text += f", from {addr}" if addr else ""
        text += f", connected since {since:%Y-%m-%d %H:%M:%S %Z}" if since else ""
        out.append((int(pid), text + ")"))
    return out


def _lock(conn: psycopg.Connection[Any], timeout_s: float) -> None:
    """Take the migration lock, waiting at most timeout_s; raise MigrationLocked naming the holder."""
    conn.execute(
        sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{max(1, int(timeout_s * 1000))}ms"))
    )
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    except psycopg.errors.LockNotAvailable:
        holders = lock_holders(conn)
        who = "; ".join(text for _, text in holders) or "a session that has ended since"
        kill = " ".join(f"SELECT pg_terminate_backend({pid});" for pid, _ in holders)
        raise MigrationLocked(
            f"the migration lock (advisory lock {_LOCK_KEY}) is held by {who}; gave up after "
            f"{timeout_s:g} s (firesentry takes it only while migrating). End that session (as a "
            f"superuser: {kill or 'SELECT pg_terminate_backend(<pid>);'}) and try again"
        ) from None
    finally:
        conn.execute("RESET lock_timeout")


def migrate(
    dsn: str,
    prefer: Literal["auto", "native", "timescale"] = "auto",
    *,
    lock_timeout_s: float | None = None,
) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date).

    When nothing is pending it returns at once, taking no lock and writing nothing, so that
    commands which only need a current schema never wait behind a migration (or behind a
    session holding the lock). Otherwise it waits for the migration lock at most
    lock_timeout_s (LOCK_TIMEOUT_S by default) and raises MigrationLocked, naming the holder.
    Connected as a superuser to a schema another role owns, it migrates as that owner (SET
    ROLE), so the objects it creates belong to the owner like the others.
    """
    applied: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        me = session_role(conn)
        if me.superuser:
            log.warning(
                "connected to PostgreSQL as a superuser; run the engine and the API as a role "
                "without it, and migrations as the schema owner (README: Storage, roles)",
                user=me.name,
            )
        if _has_table(conn) and _up_to_date(conn):
            return applied
        _lock(conn, LOCK_TIMEOUT_S if lock_timeout_s is None else lock_timeout_s)
        try:
            applied = _apply(conn, me.superuser, prefer)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise MigrationError(
                f"{me.name} may not change the schema ({str(exc).strip()}); migrations are "
                "pending: run `firesentry migrate`, which connects as the schema owner "
                "(database.migrate_user)"
            ) from exc
        finally:
            conn.execute("RESET ROLE")
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def _apply(
    conn: psycopg.Connection[Any], superuser: bool, prefer: Literal["auto", "native", "timescale"]
) -> list[str]:
    """Apply what is pending, holding the migration lock; return the names applied."""
    applied: list[str] = []
    owner = schema_owner(conn)
    if superuser and owner is not None and owner != session_role(conn).name:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
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
        applied.append(f"{mig.version:04d}_{mig.name}" + (f".{mig.variant}" if mig.variant else ""))
    with conn.transaction():
        sync_catalog(conn)
    return applied


def sync_catalog(conn: psycopg.Connection[Any]) -> None:
    """Upsert the metric catalogue so analysts can join metric names."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO metrics (id, name, unit) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit",
            [(m.id, m.name, m.unit) for m in METRICS],
        )
