"""Prometheus instruments of the whole process, served by the API at /metrics.

They live at the bottom of the import graph (beside the queries every package uses) so that
ingest, alerts and api can all count without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

from store.health import Snapshot

MESSAGES_IN = Counter("firesentry_messages_total", "MQTT messages committed by ingest")
REJECTED = Counter(
    "firesentry_messages_rejected_total", "Messages dead-lettered, by reason", ["reason"]
)
BATCH_SIZE = Histogram(
    "firesentry_batch_messages",
    "Messages per committed ingest batch",
    buckets=(1, 5, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 60000),
)
COMMIT_SECONDS = Histogram(
    "firesentry_batch_commit_seconds",
    "Time to write and commit one ingest batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ALERTS_OPENED = Counter("firesentry_alerts_opened_total", "Alerts opened (or fired again)")
NOTIFICATIONS = Counter(
    "firesentry_notifications_total",
    "Notification deliveries, by channel and result (sent, failed, given_up)",
    ["channel", "result"],
)
API_REQUESTS = Counter(
    "firesentry_api_requests_total", "HTTP API requests, by route and status", ["route", "status"]
)


# Engine health, set from the engine_health table on each scrape (see api/ops.py): the API that
# serves /metrics is often another process than the engines, so it reports what they wrote.
INGEST_LAG = Gauge(
    "firesentry_ingest_lag_seconds",
    "Age of the oldest MQTT message received but not committed, per engine",
    ["engine"],
)
BROKER_CONNECTED = Gauge(
    "firesentry_broker_connected", "1 when the engine's broker session is up", ["engine"]
)
WORKER_ALIVE = Gauge(
    "firesentry_worker_alive",
    "1 when the engine's worker runs (0 for every worker of an engine whose report is stale)",
    ["engine", "worker"],
)
HEALTH_AGE = Gauge(
    "firesentry_engine_health_age_seconds", "Seconds since the engine last reported", ["engine"]
)
OUTBOX_PENDING = Gauge(
    "firesentry_outbox_pending", "Notifications due for delivery now (pending, failed, lease over)"
)
OUTBOX_OLDEST = Gauge(
    "firesentry_outbox_oldest_pending_seconds",
    "How long the oldest notification due for delivery has waited",
)
CHANNEL_ALERTS = Gauge(
    "firesentry_channel_alert",
    "1 while a notification channel has kept failing (a channel alert is open), else 0",
    ["channel"],
)
CHANNEL_NOTIFICATIONS = Gauge(
    "firesentry_outbox_rows",
    "Notifications not delivered, by channel and state (pending, sending, failed, given_up)",
    ["channel", "state"],
)
CHANNEL_OLDEST = Gauge(
    "firesentry_outbox_rows_oldest_seconds",
    "Age of the oldest notification of a channel in a state (since it was queued)",
    ["channel", "state"],
)
_ENGINE_GAUGES = (
    INGEST_LAG,
    BROKER_CONNECTED,
    WORKER_ALIVE,
    HEALTH_AGE,
    CHANNEL_NOTIFICATIONS,
    CHANNEL_OLDEST,
    CHANNEL_ALERTS,
)


def engine_health(snap: Snapshot | None, stale_after_s: float) -> None:
    """Set the health gauges from a snapshot of engine_health (None: unknown, so drop them)."""
    for g in _ENGINE_GAUGES:
        g.clear()
    if snap is None:
        OUTBOX_PENDING.set(float("nan"))
        OUTBOX_OLDEST.set(float("nan"))
        return
    for e in snap.engines:
        h, fresh = e.health, e.age_s <= stale_after_s
        INGEST_LAG.labels(h.client_id).set(h.ingest_lag_s)
        BROKER_CONNECTED.labels(h.client_id).set(int(fresh and h.broker_connected))
        for worker, alive in (("ingest", h.ingest_alive), ("outbox", h.outbox_alive)):
            WORKER_ALIVE.labels(h.client_id, worker).set(int(fresh and alive))
        HEALTH_AGE.labels(h.client_id).set(e.age_s)
    OUTBOX_PENDING.set(snap.outbox.due)
    OUTBOX_OLDEST.set(snap.outbox.oldest_due_s)
    for c in snap.channels:
        CHANNEL_NOTIFICATIONS.labels(c.channel, c.state).set(c.count)
        CHANNEL_OLDEST.labels(c.channel, c.state).set(c.oldest_s)
    for a in snap.channel_alerts:
        CHANNEL_ALERTS.labels(a.subject).set(1)


class _Rejection(Protocol):
    @property
    def reason(self) -> str: ...


def batch_committed(messages: int, rejections: Iterable[_Rejection], alerts_opened: int) -> None:
    """Count one committed ingest batch: its size, its dead letters by reason, alerts opened."""
    MESSAGES_IN.inc(messages)
    BATCH_SIZE.observe(messages)
    for r in rejections:
        REJECTED.labels(r.reason).inc()
    if alerts_opened:
        ALERTS_OPENED.inc(alerts_opened)


# Where an outbox process sends its counts: /metrics is served by the engine's process.
_notifications_sink: Callable[[str, str, int], None] | None = None


def send_notification_counts_to(sink: Callable[[str, str, int], None]) -> None:
    """Count deliveries by calling sink(channel, result, n) instead (in the outbox process)."""
    global _notifications_sink
    _notifications_sink = sink


def notifications(channel: str, result: str, n: int = 1) -> None:
    """Count deliveries of n outbox rows on a channel."""
    if _notifications_sink is not None:
        _notifications_sink(channel, result, n)
        return
    NOTIFICATIONS.labels(channel, result).inc(n)
