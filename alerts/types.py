"""Plain values that cross from alerts to its channels; imports nothing else of firesentry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Receiver:
    """A configured destination of notifications."""

    name: str
    channel: str
    send_resolved: bool = True
    max_attempts: int = 8


@dataclass(frozen=True, slots=True)
class Notification:
    """An outbox row claimed for delivery."""

    id: int
    alert_id: int | None
    channel: str
    receiver: str
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int
