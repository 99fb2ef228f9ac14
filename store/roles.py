"""Database roles: the schema owner, the engine and API's app role, and who may take advisory locks.

- The **owner** (`firesentry_owner` in the embedded cluster) runs migrations and owns every
  table, view, sequence and function; it is not a superuser and cannot create roles or
  databases.
- The **app** role (`firesentry_app`) is what the engine and the API log in as. It owns
  nothing, so it cannot CREATE, ALTER, DROP or TRUNCATE anything; it reads and writes rows
  (telemetry and events: read and append only; schema_migrations and metrics: read only), uses
  sequences, creates temporary tables (ingest's staging tables), and makes and drops day
  partitions only through the owner's SECURITY DEFINER functions (migration 0011).
- Advisory locks: PostgreSQL grants their functions to PUBLIC, so any role that can log in
  (the Grafana read-only role too) could take the migration lock and hold every start. Only a
  superuser may revoke that grant (for anyone else REVOKE only warns "no privileges could be
  revoked"); restrict_advisory_locks() does it and grants the functions to the firesentry roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

OWNER_ROLE = "firesentry_owner"
APP_ROLE = "firesentry_app"
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Every function that takes an advisory lock (PostgreSQL 15); the unlock functions stay public.
ADVISORY_LOCK_FUNCTIONS = tuple(
    f"pg_catalog.{fn}({args})"
    for fn in (
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
    )
    for args in ("bigint", "integer, integer")
)
# What the app role may do per table; any other table (or a table added later): read and write
# rows. Views: SELECT only.
APP_TABLE_PRIVILEGES = {
    "schema_migrations": "SELECT",
    "metrics": "SELECT",
    "telemetry": "SELECT, INSERT",
    "events": "SELECT, INSERT",
    "alert_events": "SELECT, INSERT, UPDATE",  # an audit trail: no DELETE (UPDATE: stream_seq)
    "delivery_receipts": "SELECT, INSERT, UPDATE",  # what providers said: no DELETE
    "notification_attempts": "SELECT, INSERT",  # every delivery attempt: an audit trail
    "unit_grade_changes": "SELECT, INSERT",  # every change of a unit's grade: an audit trail
    "hazard_events": "SELECT, INSERT",  # every step of a hazard: an audit trail
    "hazard_photos": "SELECT, INSERT",  # evidence: kept as taken
    "duty_shifts": "SELECT, INSERT, UPDATE",  # a shift is ended, never deleted
    "duty_notes": "SELECT, INSERT",  # the duty log: an audit trail
}
APP_DEFAULT_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


@dataclass(frozen=True, slots=True)
class SessionRole:
    """Who a connection acts as, and what it may do beyond its grants."""

    name: str
    superuser: bool
    createrole: bool


def session_role(conn: psycopg.Connection[Any]) -> SessionRole:
    """The role this connection acts as (current_user) and its attributes."""
    row = conn.execute(
        "SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    return SessionRole(str(row[0]), bool(row[1]), bool(row[2]))


def schema_owner(conn: psycopg.Connection[Any]) -> str | None:
    """The owner of the firesentry schema (of schema_migrations); None before migrations."""
    row = conn.execute(
        "SELECT tableowner FROM pg_tables"
        " WHERE schemaname = 'public' AND tablename = 'schema_migrations'"
    ).fetchone()
    return None if row is None else str(row[0])


def _check_name(name: str) -> sql.Identifier:
    if not ROLE_NAME.match(name):
        raise ValueError("a role name is lower-case letters, digits and _, at most 63")
    return sql.Identifier(name)


def ensure_login_role(conn: psycopg.Connection[Any], name: str, password: str) -> str:
    """Create (or update) a LOGIN role without any special attribute; return 'created' or 'updated'.

    The password is sent as its SCRAM-SHA-256 verifier, never in clear (statement logs).
    """
    role = _check_name(name)
    if not password:
        raise ValueError("the role needs a password")
    verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(
            verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            " PASSWORD {}"
        ).format(role, sql.Literal(verifier.decode()))
    )
    return "updated" if exists else "created"


def transfer_ownership(conn: psycopg.Connection[Any], owner: str) -> list[str]:
    """Give `owner` every object of schema public that another role owns; return their names.

    For a schema migrated by a superuser before the owner role existed; needs a superuser.
    """
    role = _check_name(owner)
    changed: list[str] = []
    rels = conn.execute(
        "SELECT c.oid::regclass::text, c.relkind FROM pg_class c"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r','p','v','m','f','S')"
        " AND c.relowner <> %s::regrole"
        # a sequence owned by a column changes owner with its table
        " AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid"
        "   AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')"
        " ORDER BY c.relkind = 'S', c.oid",
        (owner,),
    ).fetchall()
    kinds = {"v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE", "S": "SEQUENCE"}
    for name, kind in rels:
        conn.execute(
            sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL(kinds.get(kind, "TABLE")), sql.SQL(name), role
            )
        )
        changed.append(str(name))
    procs = conn.execute(
        "SELECT p.oid::regprocedure::text, p.prokind FROM pg_proc p"
        " WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> %s::regrole"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
        (owner,),
    ).fetchall()
    for name, kind in procs:
        what = "PROCEDURE" if kind == "p" else "FUNCTION"
        conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(what), sql.SQL(name), role))
        changed.append(str(name))
    return changed


def prepare_database(conn: psycopg.Connection[Any], owner: str, app: str) -> list[str]:
    """Make `owner` own this database and all in it, and restrict advisory locks to owner and app.

    Run as a superuser in the firesentry database: `owner` becomes the database's owner and the
    only role that may create in schema public, app may connect and make temporary tables.
    Returns the objects whose owner changed.
    """
    own, app_id = _check_name(owner), _check_name(app)
    db = sql.Identifier(conn.info.dbname)
    with conn.transaction():
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, own))
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, app_id))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        # Explicit, not only through pg_database_owner: databases cloned from this one as a
        # template (the tests do) belong to whoever cloned them.
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(own))
        changed = transfer_ownership(conn, owner)
        restrict_advisory_locks(conn, [owner, app])
    return changed


def restrict_advisory_locks(conn: psycopg.Connection[Any], grantees: Iterable[str]) -> bool:
    """Let only `grantees` (and superusers) take advisory locks in this database.

    Returns False, changing nothing, when the session is not a superuser: the functions belong
    to the bootstrap superuser, and PostgreSQL lets nobody else revoke PUBLIC's EXECUTE.
    """
    if not session_role(conn).superuser:
        return False
    roles = [sql.Identifier(g) for g in dict.fromkeys(grantees)]
    with conn.transaction():
        for fn in ADVISORY_LOCK_FUNCTIONS:
            conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(sql.SQL(fn)))
            if roles:
                conn.execute(
                    sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                        sql.SQL(fn), sql.SQL(", ").join(roles)
                    )
                )
    return True


def may_take_advisory_locks(conn: psycopg.Connection[Any], role: str) -> bool:
    """Tell whether `role` may call pg_advisory_lock(bigint) (and so hold the migration lock)."""
    row = conn.execute(
        "SELECT has_function_privilege(%s, 'pg_catalog.pg_advisory_lock(bigint)', 'EXECUTE')",
        (role,),
    ).fetchone()
    return bool(row and row[0])


def grant_app(conn: psycopg.Connection[Any], app: str) -> None:
    """Give the app role what the engine and the API need on every object, now and later.

    Run it as the schema owner (or a superuser) after migrations; it is idempotent. Partitions
    get their parent's privileges from firesentry_create_partition, never their own here.
    """
    role = _check_name(app)
    me = session_role(conn)
    owner = schema_owner(conn) or me.name
    if owner == app:
        raise ValueError(f"{app} owns the schema; the app role must be another role")
    own = sql.Identifier(owner)
    with conn.transaction():
        dba = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        if me.superuser or (dba is not None and dba[0] == me.name):
            conn.execute(
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(conn.info.dbname), role
                )
            )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
        rels = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r','p','v','m','f')"
            " AND NOT c.relispartition AND c.relowner = %s::regrole ORDER BY c.relname",
            (owner,),
        ).fetchall()
        for name, kind in rels:
            privs = "SELECT" if kind in ("v", "m") else APP_TABLE_PRIVILEGES.get(name)
            table = sql.Identifier(name)
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(table, role))
            conn.execute(
                sql.SQL("GRANT {} ON {} TO {}").format(
                    sql.SQL(privs or APP_DEFAULT_PRIVILEGES), table, role
                )
            )
        # Sequences and functions of the schema's owner (not an extension's, in public too).
        seqs = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relkind = 'S'"
            " AND c.relnamespace = 'public'::regnamespace AND c.relowner = %s::regrole",
            (owner,),
        ).fetchall()
        for (seq,) in seqs:
            conn.execute(
                sql.SQL("GRANT USAGE, SELECT, UPDATE ON SEQUENCE {} TO {}").format(
                    sql.SQL(seq), role
                )
            )
        procs = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.prokind IN ('f', 'p')"
            " AND p.pronamespace = 'public'::regnamespace AND p.proowner = %s::regrole",
            (owner,),
        ).fetchall()
        for (proc,) in procs:
            conn.execute(sql.SQL("GRANT EXECUTE ON ROUTINE {} TO {}").format(sql.SQL(proc), role))
        for stmt in (
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT "
            + APP_DEFAULT_PRIVILEGES
            + " ON TABLES TO {role}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public"
            " GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public"
            " GRANT EXECUTE ON FUNCTIONS TO {role}",
        ):
            conn.execute(sql.SQL(stmt).format(role=role, owner=own))
