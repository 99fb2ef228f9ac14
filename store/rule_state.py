"""Persisted rule-engine state: (rule, device) → raw, active, since, last evaluated timestamp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

Row = tuple[str, int, bool, bool, int, int]  # rule_id, device_num, raw, active, since_ms, last_ts


def save(conn: psycopg.Connection[Any], rows: Sequence[Row]) -> None:
    """Upsert state rows inside the caller's transaction."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rule_state (rule_id, device_num, raw, active, since_ms, last_ts_ms)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (rule_id, device_num) DO UPDATE SET raw = EXCLUDED.raw,"
            " active = EXCLUDED.active, since_ms = EXCLUDED.since_ms,"
            " last_ts_ms = greatest(rule_state.last_ts_ms, EXCLUDED.last_ts_ms), updated_at = now()",
            rows,
        )


def load(conn: psycopg.Connection[Any]) -> list[Row]:
    """Read every state row."""
    rows = conn.execute(
        "SELECT rule_id, device_num, raw, active, since_ms, last_ts_ms FROM rule_state"
    ).fetchall()
    return [(str(r[0]), int(r[1]), bool(r[2]), bool(r[3]), int(r[4]), int(r[5])) for r in rows]


def device_last_seen(conn: psycopg.Connection[Any]) -> list[tuple[int, int]]:
    """Return (device_num, last_seen epoch ms) for devices heard from at least once."""
    rows = conn.execute(
        "SELECT num, (extract(epoch FROM last_seen) * 1000)::bigint FROM devices"
        " WHERE last_seen IS NOT NULL"
    ).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]
