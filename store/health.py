"""Engine health across processes: each engine's row in engine_health, the outbox backlog.

The engine writes its row every few seconds; the API (possibly another process) reads the rows
and the backlog for /readyz and /metrics. `Outage` is the one rule for logging an outage.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

# How often an engine rewrites its row; a reader calls a row stale after several missed writes.
WRITE_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """What one engine process reports about its workers."""

    client_id: str
    host: str
    pid: int
    started_at: dt.datetime
    broker_connected: bool
    ingest_alive: bool
    outbox_alive: bool
    ingest_lag_s: float
    committed_messages: int
    last_batch_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """An engine's last report, with its age by the database's clock."""

    health: EngineHealth
    updated_at: dt.datetime
    age_s: float


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """Notifications the outbox could claim now, and how long the oldest of them has waited."""

    due: int
    oldest_due_s: float


@dataclass(frozen=True, slots=True)
class ChannelCount:
    """Notifications of one channel in one state, and the age of the oldest of them."""

    channel: str
    state: str
    count: int
    oldest_s: float


@dataclass(frozen=True, slots=True)
class OpenChannelAlert:
    """A notification channel that has kept failing (alerts/channel_watch.py)."""

    subject: str
    failing_since: dt.datetime
    waiting: int
    last_error: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything readiness and the health gauges read."""

    engines: list[EngineStatus]
    outbox: OutboxBacklog
    channels: list[ChannelCount] = field(default_factory=list)
    channel_alerts: list[OpenChannelAlert] = field(default_factory=list)


_UPSERT = """
INSERT INTO engine_health (client_id, host, pid, started_at, broker_connected, ingest_alive,
                           outbox_alive, ingest_lag_s, committed_messages, last_batch_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (client_id) DO UPDATE SET
    host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
    broker_connected = EXCLUDED.broker_connected, ingest_alive = EXCLUDED.ingest_alive,
    outbox_alive = EXCLUDED.outbox_alive, ingest_lag_s = EXCLUDED.ingest_lag_s,
    committed_messages = EXCLUDED.committed_messages, last_batch_at = EXCLUDED.last_batch_at,
    updated_at = now()
"""

_ENGINES = """
SELECT client_id, host, pid, started_at, broker_connected, ingest_alive, outbox_alive,
       ingest_lag_s, committed_messages, last_batch_at, updated_at,
       extract(epoch FROM now() - updated_at)::float8
FROM engine_health ORDER BY client_id
"""

# The rows the outbox's claim would take now (alerts/outbox.py _CLAIM): due pending/failed ones,
# and ones whose sender's lease ran out. A row waits since it fell due (or its lease ended).
_BACKLOG = """
SELECT count(*),
       coalesce(extract(epoch FROM now() - min(
           CASE WHEN state = 'sending' THEN lease_until ELSE next_attempt_at END)), 0)::float8
FROM notifications
WHERE (state IN ('pending', 'failed') AND next_attempt_at <= now())
   OR (state = 'sending' AND lease_until < now())
"""


def write(conn: psycopg.Connection[Any], h: EngineHealth) -> None:
    """Insert or replace the engine's row, stamped with the database's now()."""
    conn.execute(
        _UPSERT,
        (
            h.client_id,
            h.host,
            h.pid,
            h.started_at,
            h.broker_connected,
            h.ingest_alive,
            h.outbox_alive,
            h.ingest_lag_s,
            h.committed_messages,
            h.last_batch_at,
        ),
    )


def remove(conn: psycopg.Connection[Any], client_id: str, host: str, pid: int) -> None:
    """Delete the row of an engine that stopped on purpose (not one a newer process took over)."""
    conn.execute(
        "DELETE FROM engine_health WHERE client_id = %s AND host = %s AND pid = %s",
        (client_id, host, pid),
    )


def engines(conn: psycopg.Connection[Any]) -> list[EngineStatus]:
    """Every engine's last report, by client id."""
    return [
        EngineStatus(EngineHealth(*r[:10]), r[10], float(r[11]))
        for r in conn.execute(_ENGINES).fetchall()
    ]


def outbox_backlog(conn: psycopg.Connection[Any]) -> OutboxBacklog:
    """How many notifications are due and how long the oldest due one has waited."""
    row = conn.execute(_BACKLOG).fetchone()
    assert row is not None
    return OutboxBacklog(int(row[0]), max(0.0, float(row[1])))


def due_or_sending(conn: psycopg.Connection[Any]) -> int:
    """Notifications due now or being sent: what a stopping demo waits for."""
    row = conn.execute(
        "SELECT count(*) FROM notifications WHERE state = 'sending'"
        " OR (state IN ('pending', 'failed') AND next_attempt_at <= now())"
    ).fetchone()
    assert row is not None
    return int(row[0])


# Rows not yet delivered (or given up), by channel: served by notifications_state_created.
_BY_CHANNEL = """
SELECT channel, state, count(*), extract(epoch FROM now() - min(created_at))::float8
FROM notifications WHERE state IN ('pending', 'sending', 'failed', 'given_up')
GROUP BY channel, state ORDER BY channel, state
"""


def channel_counts(conn: psycopg.Connection[Any]) -> list[ChannelCount]:
    """Pending, sending, failed and given-up notifications per channel, with the oldest's age."""
    return [
        ChannelCount(r[0], r[1], int(r[2]), max(0.0, float(r[3])))
        for r in conn.execute(_BY_CHANNEL).fetchall()
    ]


def channel_alerts(conn: psycopg.Connection[Any]) -> list[OpenChannelAlert]:
    """The channel alerts open now, oldest first."""
    rows = conn.execute(
        "SELECT subject, failing_since, waiting, last_error FROM channel_alerts"
        " WHERE cleared_at IS NULL ORDER BY failing_since"
    ).fetchall()
    return [OpenChannelAlert(r[0], r[1], int(r[2]), r[3]) for r in rows]


def snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    """Engines and backlog together (what /readyz reads)."""
    return Snapshot(engines(conn), outbox_backlog(conn))


def status_snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    """The snapshot with the open channel alerts (what the console's /status reads)."""
    return Snapshot(engines(conn), outbox_backlog(conn), [], channel_alerts(conn))


def metrics_snapshot(conn: psycopg.Connection[Any]) -> Snapshot:
    """The snapshot with the outbox per channel and the open channel alerts (for /metrics)."""
    return Snapshot(engines(conn), outbox_backlog(conn), channel_counts(conn), channel_alerts(conn))


class Outage:
    """When a dependency is failing: say so once, again at most every `every_s`, and when over."""

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self.since: float | None = None
        self._next_report = 0.0

    def failed(self) -> float | None:
        """Note a failure; seconds since the outage began when it is time to log, else None."""
        now = self.clock()
        if self.since is None:
            self.since = now
            self._next_report = now + self.every_s
            return 0.0
        if now >= self._next_report:
            self._next_report = now + self.every_s
            return now - self.since
        return None

    def lasted_s(self) -> float:
        """Seconds since the outage began (0 when there is none)."""
        return 0.0 if self.since is None else self.clock() - self.since

    def recovered(self) -> float | None:
        """Note a success; how long the outage lasted if one was going on, else None."""
        if self.since is None:
            return None
        lasted = self.clock() - self.since
        self.since = None
        return lasted
