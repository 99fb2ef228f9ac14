"""Webhook channel: signed JSON POSTs with an idempotency key."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import aiohttp
import msgspec

from alerts.errors import PermanentError, RetryableError
from alerts.types import Notification

SIGNATURE_HEADER = "X-Firesentry-Signature"
TIMESTAMP_HEADER = "X-Firesentry-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Statuses that say "later might work"; every other 4xx means the request itself is wrong.
_RETRYABLE_4XX = frozenset({408, 425, 429})


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
        try:
            async with self.session.post(
                target.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=target.timeout_s),
            ) as resp:
                text = (await resp.text(errors="replace"))[:200]
                if 200 <= resp.status < 300:
                    return
                msg = f"HTTP {resp.status}: {text}"
                if resp.status >= 500 or resp.status in _RETRYABLE_4XX:
                    raise RetryableError(msg)
                raise PermanentError(msg)
        except TimeoutError as exc:
            raise RetryableError(f"timed out after {target.timeout_s}s") from exc
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
