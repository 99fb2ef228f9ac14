"""Webhook channel: signed JSON POSTs with an idempotency key."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import aiohttp
import msgspec

from alerts.errors import PermanentError
from alerts.notify.http import IDEMPOTENCY_HEADER, raise_for_status, request
from alerts.types import Notification

SIGNATURE_HEADER = "X-Firesentry-Signature"
TIMESTAMP_HEADER = "X-Firesentry-Timestamp"


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where and how to POST for one receiver."""

    url: str
    secret: bytes | None
    timeout_s: float


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """Return the signature header value: sha256=<hex HMAC of "<timestamp>.<body>">."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes, timestamp: str, body: bytes, header: str, max_skew_s: float = 300
) -> bool:
    """Check a signature the way a receiver should (constant time, bounded clock skew)."""
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        return False
    return age <= max_skew_s and hmac.compare_digest(sign(secret, timestamp, body), header)


def body_of(n: Notification) -> bytes:
    """The exact bytes POSTed for a notification (the same on every retry)."""
    return msgspec.json.encode({**n.payload, "idempotency_key": n.idempotency_key})


class WebhookNotifier:
    """Delivers notifications of channel 'webhook' to configured targets."""

    channel = "webhook"

    def __init__(self, targets: dict[str, WebhookTarget], session: aiohttp.ClientSession) -> None:
        self.targets = targets
        self.session = session

    async def send(self, n: Notification) -> None:
        """POST one notification; raise RetryableError or PermanentError on failure."""
        target = self.targets.get(n.receiver)
        if target is None:
            raise PermanentError(f"no webhook receiver named {n.receiver!r} in the configuration")
        body = body_of(n)
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            IDEMPOTENCY_HEADER: n.idempotency_key,
            "User-Agent": "firesentry/1",
        }
        if target.secret:
            headers[SIGNATURE_HEADER] = sign(target.secret, ts, body)
        status, text = await request(
            self.session, "POST", target.url, target.timeout_s, data=body, headers=headers
        )
        raise_for_status(status, text)
