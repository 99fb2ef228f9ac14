"""A read-only login role for dashboards (Grafana): SELECT on the data, nothing secret."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Tables and columns a dashboard must never read: token hashes, device password hashes.
HIDDEN_TABLES = ("api_tokens",)
HIDDEN_COLUMNS = {"devices": ("password_hash",)}


def ensure_readonly_role(conn: psycopg.Connection[Any], name: str, password: str) -> str:
    """Create (or update) a LOGIN role that can only SELECT; return 'created' or 'updated'.

    It reads every table and view of the schema, now and later (default privileges of the
    current user), except token and password hashes, and its sessions are read-only.
    """
    if not ROLE_NAME.match(name):
        raise ValueError("a role name is lower-case letters, digits and _, at most 63")
    if not password:
        raise ValueError("the role needs a password")
    role = sql.Identifier(name)
    dbname = sql.Identifier(conn.info.dbname)
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                role, sql.Literal(password)
            )
        )
        for stmt in (
            "ALTER ROLE {role} SET default_transaction_read_only = on",
            "GRANT CONNECT ON DATABASE {db} TO {role}",
            "GRANT USAGE ON SCHEMA public TO {role}",
            "REVOKE CREATE ON SCHEMA public FROM {role}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}",
        ):
            conn.execute(sql.SQL(stmt).format(role=role, db=dbname))
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
    return "updated" if exists else "created"
