"""Webhook channel: signed JSON POSTs whose body carries the idempotency key.

The signature covers "<timestamp>.<body>", and the body holds `idempotency_key`, so a receiver
that checks the signature and the timestamp window and deduplicates on the body's key (see
check()) processes each notification once, however often it is replayed.
"""

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
# How far a delivery's timestamp may be from the receiver's clock (replays older are refused).
MAX_SKEW_S = 300.0


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
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    max_skew_s: float = MAX_SKEW_S,
    now: float | None = None,
) -> bool:
    """Check a signature the way a receiver should (constant time, bounded clock skew)."""
    try:
        check(secret, timestamp, body, header, max_skew_s, now)
    except InvalidDelivery:
        return False
    return True


class InvalidDelivery(ValueError):
    """A POST a receiver must refuse; `status` is what to answer (401 unsigned, 400 malformed)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def check(
    secret: bytes,
    timestamp: str | None,
    body: bytes,
    header: str | None,
    max_skew_s: float = MAX_SKEW_S,
    now: float | None = None,
) -> str:
    """Verify a delivery and return its idempotency key (from the signed body), or raise InvalidDelivery.

    Deduplicate on the returned key: it is covered by the signature. The Idempotency-Key header
    is a copy for proxies and logs; it is not signed, so a replay could carry a fresh one.
    """
    if not header or not timestamp:
        raise InvalidDelivery("missing signature")
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        raise InvalidDelivery("bad timestamp") from None
    if not age <= max_skew_s:  # also refuses nan and inf
        raise InvalidDelivery(f"timestamp outside {max_skew_s:g} s")
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, header.encode("utf-8", "surrogateescape")):
        raise InvalidDelivery("bad signature")
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise InvalidDelivery("body is not JSON", 400) from None
    key = doc.get("idempotency_key") if isinstance(doc, dict) else None
    if not isinstance(key, str) or not key:
        raise InvalidDelivery("body has no idempotency_key", 400)
    return key


def body_of(n: Notification) -> bytes:
    """The exact bytes POSTed for a notification (the same on every retry)."""
    return msgspec.json.encode({**n.payload, "idempotency_key": n.idempotency_key})


class WebhookNotifier:
    """Delivers notifications of channel 'webhook' (or another JSON channel, such as
    'fire_119') to configured targets."""

    def __init__(
        self,
        targets: dict[str, WebhookTarget],
        session: aiohttp.ClientSession,
        channel: str = "webhook",
    ) -> None:
        self.targets = targets
        self.session = session
        self.channel = channel

    async def send(self, n: Notification) -> None:
        """POST one notification; raise RetryableError or PermanentError on failure."""
        target = self.targets.get(n.receiver)
        if target is None:
            raise PermanentError(
                f"no {self.channel} receiver named {n.receiver!r} in the configuration"
            )
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
