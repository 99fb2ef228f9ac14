"""Prometheus instruments of the whole process, served by the API at /metrics.

They live at the bottom of the import graph (beside the queries every package uses) so that
ingest, alerts and api can all count without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import Counter, Histogram

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


def notifications(channel: str, result: str, n: int = 1) -> None:
    """Count deliveries of n outbox rows on a channel."""
    NOTIFICATIONS.labels(channel, result).inc(n)
