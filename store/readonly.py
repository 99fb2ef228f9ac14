"""A read-only login role for dashboards (Grafana): SELECT on the data, nothing secret, no locks."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from store.roles import (
    ROLE_NAME,
    ensure_login_role,
    restrict_advisory_locks,
    schema_owner,
    session_role,
)

__all__ = ["HIDDEN_COLUMNS", "HIDDEN_TABLES", "ROLE_NAME", "ensure_readonly_role"]

# Tables and columns a dashboard must never read: token hashes, device password hashes.
HIDDEN_TABLES = ("api_tokens",)
HIDDEN_COLUMNS = {"devices": ("password_hash",)}


def _writers(conn: psycopg.Connection[Any], owner: str) -> list[str]:
    """The schema owner and the roles that may append to alert_events (the engine's)."""
    rows = conn.execute(
        "SELECT DISTINCT r.rolname FROM pg_class c, aclexplode(c.relacl) a"
        " JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE c.oid = to_regclass('public.alert_events') AND a.privilege_type = 'INSERT'"
        " ORDER BY 1"
    ).fetchall()
    return [owner, *(str(r[0]) for r in rows)]


def ensure_readonly_role(conn: psycopg.Connection[Any], name: str, password: str) -> str:
    """Create (or update) a LOGIN role that can only SELECT; return 'created' or 'updated'.

    It reads every table and view of the schema, now and later (default privileges of the
    schema owner), except token and password hashes, and its sessions are read-only. Run by a
    superuser, this also takes advisory locks from PUBLIC (store.roles.restrict_advisory_locks),
    keeping them for the schema owner and the engine's role, so that the new role cannot hold
    the migration lock; otherwise check store.roles.may_take_advisory_locks afterwards.
    """
    if not ROLE_NAME.match(name):
        raise ValueError("a role name is lower-case letters, digits and _, at most 63")
    if not password:
        raise ValueError("the role needs a password")
    role = sql.Identifier(name)
    dbname = sql.Identifier(conn.info.dbname)
    with conn.transaction():
        done = ensure_login_role(conn, name, password)
        owner = schema_owner(conn) or session_role(conn).name
        for stmt in (
            "ALTER ROLE {role} SET default_transaction_read_only = on",
            "GRANT CONNECT ON DATABASE {db} TO {role}",
            "GRANT USAGE ON SCHEMA public TO {role}",
            "REVOKE CREATE ON SCHEMA public FROM {role}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
            # Tables the owner's later migrations create (and new partitions) are readable too.
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public"
            " GRANT SELECT ON TABLES TO {role}",
        ):
            conn.execute(sql.SQL(stmt).format(role=role, db=dbname, owner=sql.Identifier(owner)))
        for table in HIDDEN_TABLES:
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(table), role))
        for table, hidden in HIDDEN_COLUMNS.items():
            cols = conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = %s AND column_name <> ALL(%s)"
                " ORDER BY ordinal_position",
                (table, list(hidden)),
            ).fetchall()
            conn.execute(sql.SQL("REVOKE SELECT ON {} FROM {}").format(sql.Identifier(table), role))
            conn.execute(
                sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(c[0]) for c in cols),
                    sql.Identifier(table),
                    role,
                )
            )
        restrict_advisory_locks(conn, [w for w in _writers(conn, owner) if w != name])
    return done
