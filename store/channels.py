"""The PostgreSQL NOTIFY channels firesentry uses, named once, and the statements on them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# Woken when notifications are queued: the outbox worker listens.
OUTBOX = "firesentry_outbox"
# Woken by the alert_events trigger (migration 0006, which spells the same name): the API's feed.
ALERT_EVENTS = "firesentry_alert_events"


def notify_outbox(conn: psycopg.Connection[Any]) -> None:
    """Wake the outbox worker when the caller's transaction commits."""
    conn.execute(sql.SQL("SELECT pg_notify({}, '')").format(sql.Literal(OUTBOX)))


def listen_statement(channel: str) -> sql.Composed:
    """`LISTEN channel`, for a sync or async connection."""
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


async def listen(conn: psycopg.AsyncConnection[Any], channel: str) -> None:
    """Have the (autocommit) connection woken by NOTIFY on `channel`, e.g. OUTBOX."""
    await conn.execute(listen_statement(channel))
