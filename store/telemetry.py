"""Write readings and events without duplicates.

Readings go by binary COPY straight into telemetry (PostgreSQL routes each row to its day
partition or chunk), inside a savepoint. Only a batch that repeats a stored reading (a
redelivery after a crash: committed, then the ack was lost) hits the primary key; it is then
written again through a staging table with ON CONFLICT DO NOTHING. COPY straight in writes each
row once instead of twice (stage, then insert).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

# PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
_PG_EPOCH_MS = 946_684_800_000
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"

_ROW = np.dtype(
    [
        ("nfields", ">i2"),
        ("l_ts", ">i4"),
        ("ts", ">i8"),
        ("l_dev", ">i4"),
        ("dev", ">i4"),
        ("l_metric", ">i4"),
        ("metric", ">i2"),
        ("l_value", ">i4"),
        ("value", ">f8"),
    ]
)


def telemetry_copy_buffer(
    dev: npt.NDArray[np.int32],
    metric: npt.NDArray[np.int16],
    ts_ms: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
) -> bytes:
    """Encode readings as one PostgreSQL binary COPY stream, without a Python loop."""
    rows = np.empty(dev.shape[0], dtype=_ROW)
    rows["nfields"] = 4
    rows["l_ts"] = 8
    rows["ts"] = (ts_ms - _PG_EPOCH_MS) * 1000
    rows["l_dev"] = 4
    rows["dev"] = dev
    rows["l_metric"] = 2
    rows["metric"] = metric
    rows["l_value"] = 8
    rows["value"] = value
    return _HEADER + rows.tobytes() + _TRAILER


class TelemetryWriter:
    """Stores readings exactly once per (device, metric, ts) on one connection."""

    def __init__(self) -> None:
        self._prepared_pid: int | None = None
        # Batches written straight in, and batches that repeated stored readings.
        self.direct = 0
        self.deduplicated = 0

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Create the session's staging tables (call outside a transaction, once per connection)."""
        self._stage(conn)

    def _stage(self, conn: psycopg.Connection[Any]) -> None:
        pid = conn.info.backend_pid
        if pid == self._prepared_pid:
            return
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage"
            " (ts timestamptz, device_num integer, metric_id smallint, value double precision)"
            " ON COMMIT DELETE ROWS"
        )
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS events_stage"
            " (ts timestamptz, device_num integer, seq bigint, kind smallint,"
            "  loop_no integer, point_no integer, text text) ON COMMIT DELETE ROWS"
        )
        # Created inside a transaction, the tables vanish if it rolls back: only remember them
        # when they were committed on their own.
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self._prepared_pid = pid

    def write_readings(
        self,
        conn: psycopg.Connection[Any],
        dev: npt.NDArray[np.int32],
        metric: npt.NDArray[np.int16],
        ts_ms: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
    ) -> int:
        """Insert readings inside the caller's transaction; return how many were new."""
        if dev.size == 0:
            return 0
        buf = telemetry_copy_buffer(dev, metric, ts_ms, value)
        try:
            # A savepoint in the caller's transaction: a duplicate undoes only this COPY.
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(
                    "COPY telemetry (ts, device_num, metric_id, value) FROM STDIN (FORMAT BINARY)"
                ) as cp,
            ):
                cp.write(buf)
            self.direct += 1
            return int(dev.size)
        except psycopg.errors.UniqueViolation:
            self.deduplicated += 1
        self._stage(conn)
        with conn.cursor() as cur:
            with cur.copy(
                "COPY telemetry_stage (ts, device_num, metric_id, value) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.write(buf)
            # Staged rows vanish at commit (ON COMMIT DELETE ROWS). A redelivered message
            # (committed, then the ack was lost) conflicts with the primary key and is skipped.
            cur.execute(
                "INSERT INTO telemetry (ts, device_num, metric_id, value)"
                " SELECT ts, device_num, metric_id, value FROM telemetry_stage"
                " ON CONFLICT DO NOTHING"
            )
            inserted = cur.rowcount
        return inserted

    def write_events(
        self,
        conn: psycopg.Connection[Any],
        rows: Sequence[tuple[object, ...]],
    ) -> int:
        """Insert events (ts, device_num, seq, kind, loop, point, text); return how many were new."""
        if not rows:
            return 0
        self._stage(conn)
        with conn.cursor() as cur:
            with cur.copy(
                "COPY events_stage (ts, device_num, seq, kind, loop_no, point_no, text) FROM STDIN"
            ) as cp:
                for row in rows:
                    cp.write_row(row)
            cur.execute("INSERT INTO events SELECT * FROM events_stage ON CONFLICT DO NOTHING")
            inserted = cur.rowcount
        return inserted
