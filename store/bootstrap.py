"""Cluster set-up as the superuser: the database itself, and extensions only a superuser creates."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """Tell whether the cluster has a database of this name."""
    return (
        conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    )


def create_database(conn: psycopg.Connection[Any], name: str, owner: str) -> None:
    """Create the database, owned by `owner` (an autocommit connection: not in a transaction)."""
    conn.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
    )


def ensure_timescaledb(conn: psycopg.Connection[Any]) -> None:
    """Create the timescaledb extension in the connection's database unless it is there."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
