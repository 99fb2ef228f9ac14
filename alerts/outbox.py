"""The outbox worker: claims due notification rows, delivers them, records the result."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
import structlog
from psycopg.rows import tuple_row

from alerts.errors import PermanentError, RetryableError
from alerts.types import Notification

log = structlog.get_logger("outbox")


class Notifier(Protocol):
    """A channel: delivers one notification or raises RetryableError / PermanentError."""

    channel: str

    async def send(self, n: Notification) -> None:
        """Deliver the notification."""
        ...


@dataclass(frozen=True, slots=True)
class OutboxOptions:
    """Timing of the worker."""

    poll_interval_s: float = 1.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    lease_s: float = 60.0
    batch: int = 50


_CLAIM = """
UPDATE notifications n
SET state = 'sending', attempts = n.attempts + 1,
    lease_until = now() + make_interval(secs => %(lease)s)
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE (state IN ('pending', 'failed') AND next_attempt_at <= now())
       OR (state = 'sending' AND lease_until < now())
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING n.id, n.alert_id, n.channel, n.receiver, n.idempotency_key::text, n.payload, n.attempts
"""


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter for the n-th failed attempt."""
    return float(random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, attempt - 1)))


class OutboxWorker:
    """Delivers notifications with retries; a crash at any point neither loses nor skips one."""

    def __init__(
        self,
        dsn: str,
        notifiers: Mapping[str, Notifier],
        max_attempts: Mapping[str, int],
        options: OutboxOptions,
    ) -> None:
        self.dsn = dsn
        self.notifiers = notifiers
        self.max_attempts = max_attempts
        self.opts = options
        self._stop = asyncio.Event()
        self.delivered = 0

    def stop(self) -> None:
        """Ask the worker to finish its current round and return."""
        self._stop.set()

    async def run(self) -> None:
        """Deliver until stopped; reconnect after database outages."""
        while not self._stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, row_factory=tuple_row
                ) as conn:
                    await conn.execute("LISTEN firesentry_outbox")
                    await self._loop(conn)
            except psycopg.OperationalError as exc:
                log.warning("outbox database unavailable; retrying", error=str(exc).strip()[:200])
                await self._sleep(min(5.0, self.opts.poll_interval_s * 2))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _loop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while not self._stop.is_set():
            claimed = await self.run_once(conn)
            if claimed:
                continue
            # Sleep until a commit notifies us, or the poll interval passes (retries fall due).
            gen = conn.notifies(timeout=self.opts.poll_interval_s, stop_after=1)
            async for _ in gen:
                pass

    async def run_once(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Claim and deliver one round of due notifications; return how many were claimed."""
        cur = await conn.execute(_CLAIM, {"lease": self.opts.lease_s, "limit": self.opts.batch})
        rows = await cur.fetchall()
        if not rows:
            return 0
        batch = [Notification(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]
        results = await asyncio.gather(*(self._deliver(n) for n in batch))
        for n, (state, error, delay) in zip(batch, results, strict=True):
            if state == "sent":
                await conn.execute(
                    "UPDATE notifications SET state = 'sent', sent_at = now(), lease_until = NULL,"
                    " last_error = NULL WHERE id = %s",
                    (n.id,),
                )
                self.delivered += 1
            else:
                await conn.execute(
                    "UPDATE notifications SET state = %s, last_error = %s, lease_until = NULL,"
                    " next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
                    (state, error, delay, n.id),
                )
        return len(batch)

    async def _deliver(self, n: Notification) -> tuple[str, str | None, float]:
        notifier = self.notifiers.get(n.channel)
        bound = log.bind(
            notification_id=n.id,
            alert_id=n.alert_id,
            receiver=n.receiver,
            channel=n.channel,
            attempt=n.attempts,
        )
        if notifier is None:
            bound.error("no notifier for channel; giving up")
            return "given_up", f"no notifier for channel {n.channel!r}", 0.0
        try:
            await notifier.send(n)
        except PermanentError as exc:
            bound.error("notification refused; giving up", error=str(exc))
            return "given_up", str(exc)[:500], 0.0
        except RetryableError as exc:
            limit = self.max_attempts.get(n.receiver, 8)
            if n.attempts >= limit:
                bound.error("notification failed; out of attempts", error=str(exc))
                return "given_up", str(exc)[:500], 0.0
            delay = backoff_s(n.attempts, self.opts.backoff_base_s, self.opts.backoff_max_s)
            bound.warning(
                "notification failed; will retry", error=str(exc), retry_in_s=round(delay, 2)
            )
            return "failed", str(exc)[:500], delay
        bound.info("notification sent")
        return "sent", None, 0.0
