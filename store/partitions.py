"""Daily range partitions of telemetry and events on plain PostgreSQL (TimescaleDB does its own)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import psycopg

TABLES = ("telemetry", "events")
_DAY_MS = 86_400_000


def day_of_ms(ts_ms: int) -> dt.date:
    """Return the UTC day that holds an epoch-ms timestamp."""
    return dt.date(1970, 1, 1) + dt.timedelta(days=ts_ms // _DAY_MS)


def is_partitioned(conn: psycopg.Connection[Any]) -> bool:
    """Tell whether telemetry is a native partitioned table (False under TimescaleDB)."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass('telemetry')"
    ).fetchone()
    return bool(row and row[0] == "p")


class PartitionManager:
    """Creates the day partitions a batch needs (once each) and drops those past retention."""

    def __init__(self) -> None:
        self._known: set[tuple[str, dt.date]] = set()

    def load(self, conn: psycopg.Connection[Any]) -> None:
        """Learn which partitions exist already."""
        rows = conn.execute(
            "SELECT p.relname, parent.relname FROM pg_inherits i"
            " JOIN pg_class p ON p.oid = i.inhrelid JOIN pg_class parent ON parent.oid = i.inhparent"
            " WHERE parent.relname = ANY(%s)",
            (list(TABLES),),
        ).fetchall()
        for child, parent in rows:
            try:
                day = dt.datetime.strptime(str(child).rsplit("_p", 1)[1], "%Y%m%d").date()
            except (IndexError, ValueError):
                continue
            self._known.add((str(parent), day))

    def ensure(self, conn: psycopg.Connection[Any], days: Iterable[dt.date]) -> None:
        """Create missing partitions for these days, in autocommit (DDL outside the batch)."""
        for day in sorted(set(days)):
            for table in TABLES:
                if (table, day) in self._known:
                    continue
                # The schema owner's SECURITY DEFINER function (migration 0011): the engine's
                # role does not own telemetry and events. It names the partition
                # {table}_pYYYYMMDD, bounds it by the UTC day and copes with another worker
                # creating it at the same moment.
                conn.execute("SELECT firesentry_create_partition(%s, %s)", (table, day))
                self._known.add((table, day))

    def ensure_ahead(self, conn: psycopg.Connection[Any], today: dt.date, ahead: int) -> None:
        """Create partitions from yesterday to `ahead` days from today."""
        self.ensure(conn, (today + dt.timedelta(days=k) for k in range(-1, ahead + 1)))

    def drop_expired(
        self, conn: psycopg.Connection[Any], today: dt.date, keep_days: int
    ) -> list[str]:
        """Drop partitions wholly older than the retention; return their names."""
        cutoff = today - dt.timedelta(days=keep_days)
        dropped = []
        for table, day in sorted(self._known):
            if day < cutoff:
                # The owner's function (migration 0011). False: no such partition (another
                # worker dropped it), or it may hold data of yesterday or later (clocks apart),
                # which the function never drops; load() finds it again at the next start.
                row = conn.execute(
                    "SELECT firesentry_drop_partition(%s, %s)", (table, day)
                ).fetchone()
                self._known.discard((table, day))
                if row and row[0]:
                    dropped.append(f"{table}_p{day:%Y%m%d}")
        return dropped


def apply_timescale_retention(conn: psycopg.Connection[Any], keep_days: int) -> None:
    """Set TimescaleDB's retention policy on telemetry and events to keep_days."""
    # The schema owner's SECURITY DEFINER function (migration 0011): it owns the hypertables
    # and the jobs; the engine's role owns neither.
    conn.execute("SELECT firesentry_set_retention(%s)", (keep_days,))
