"""Helpers shared by the alerts tests."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from alerts.types import Notification

_ids = itertools.count(1)


def note(channel: str, receiver: str, **payload: Any) -> Notification:
    """A claimed notification for a channel with a fresh idempotency key."""
    body = {"title": "Fire alarm", "text": "FIRE ALARM at Unit 7 (SD-001)", "locale": "en"}
    body.update(payload)
    return Notification(
        id=next(_ids),
        alert_id=1,
        channel=channel,
        receiver=receiver,
        idempotency_key=str(uuid.uuid4()),
        payload=body,
        attempts=1,
    )
