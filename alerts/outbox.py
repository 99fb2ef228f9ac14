"""The outbox worker: claims due notification rows, delivers them, records the result."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import psycopg
import structlog
from psycopg.rows import tuple_row

from alerts import channel_watch, failover, grouping
from alerts.errors import PermanentError, RetryableError
from alerts.retry import DEFAULT_POLICIES, Retry, RetryPolicy, Stop, after_failure, backoff_s
from alerts.shape import channel_notice, unreachable_notice
from alerts.types import Notification
from store import channel_alerts as store_channels
from store import channels, instruments
from store import failover as store_failover
from store import outbox as store_outbox
from store import receipts as store_receipts
from store.health import Outage
from store.outbox import ClaimedRow

log = structlog.get_logger("outbox")


class OutboxFailing(RuntimeError):
    """Rounds kept failing for longer than OutboxOptions.dead_after_s: the worker gave up."""


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
    # channel → (max messages per recipient, window seconds); critical alerts are never held.
    rate_limits: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    timezone: str = "Asia/Shanghai"
    # While the database is away: how often to try it again, and how long one try may take.
    reconnect_probe_s: float = 0.5
    connect_timeout_s: float = 5.0
    # After an unexpected error in a round: the pause, and how long such errors may go on
    # without a good round in between before the worker counts as dead (run() raises).
    error_pause_s: float = 1.0
    dead_after_s: float = 60.0
    # How long a failing notification is tried, by the severity of its (worst) alert.
    retry: Mapping[str, RetryPolicy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    # A channel failing this long is a channel alert, told to the control room (looked at
    # every channel_check_s) through control_room (webhooks, robots) and its contacts.
    channel_alert_after_s: float = 120.0
    channel_check_s: float = 10.0
    control_room: Sequence[tuple[str, str]] = ()
    # A contact's notification failing this long (or refused) goes out on their next channel
    # (looked at every channel_check_s); see alerts/failover.py.
    failover_after_s: float = 60.0
    # Whether any provider sends delivery receipts: without one, no round looks for them.
    receipts: bool = True


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
        self.tz = ZoneInfo(options.timezone)
        self._watched_at = 0.0

    def stop(self) -> None:
        """Ask the worker to finish its current round and return."""
        self._stop.set()

    async def run(self) -> None:
        """Deliver until stopped; raise OutboxFailing when rounds keep failing (see below).

        Supervision policy of the outbox: a database outage (a connection error) is waited out,
        probing every `reconnect_probe_s` so that work resumes within about a second of the
        database coming back; it is logged once, then every 30 s, and when it ends. Any other
        exception from a round is logged and the round retried after `error_pause_s` on a fresh
        connection (the worker keeps no state: the rows stay in the database). Only when rounds
        have kept failing for longer than `dead_after_s` without one good round does the worker
        give up by raising, so that its process is restarted (see firesentry/app.py).
        """
        outage = Outage()
        errors = Outage()
        while not self._stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.dsn,
                    autocommit=True,
                    row_factory=tuple_row,
                    connect_timeout=max(2, round(self.opts.connect_timeout_s)),
                ) as conn:
                    await channels.listen(conn, channels.OUTBOX)
                    lasted = outage.recovered()
                    if lasted is not None:
                        log.info("outbox database reachable again", down_for_s=round(lasted, 1))
                    await self._loop(conn, errors)
            except psycopg.OperationalError as exc:
                down_for = outage.failed()
                if down_for is not None:
                    log.warning(
                        "outbox database unavailable; probing"
                        if down_for == 0
                        else "outbox database still unavailable",
                        error=str(exc).strip()[:200],
                        down_for_s=round(down_for, 1),
                        probe_every_s=self.opts.reconnect_probe_s,
                    )
                await self._sleep(self.opts.reconnect_probe_s)
            except Exception as exc:
                failing_for = errors.lasted_s()
                if failing_for > self.opts.dead_after_s:
                    raise OutboxFailing(
                        f"outbox rounds have failed for {failing_for:.0f} s without a good one"
                    ) from exc
                if errors.failed() is not None:
                    log.exception(
                        "outbox round failed unexpectedly; retrying",
                        failing_for_s=round(failing_for, 1),
                        retry_in_s=self.opts.error_pause_s,
                    )
                await self._sleep(self.opts.error_pause_s)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _loop(self, conn: psycopg.AsyncConnection[Any], errors: Outage) -> None:
        while not self._stop.is_set():
            if self.opts.receipts:
                await self.apply_receipts(conn)
            claimed = await self.run_once(conn)
            now = time.monotonic()
            if now - self._watched_at >= self.opts.channel_check_s:
                self._watched_at = now
                await self.watch_channels(conn)
                await self.fail_over(conn)
            if errors.recovered() is not None:
                log.info("outbox rounds succeed again")
            if claimed:
                continue
            # Sleep until a commit notifies us, or the poll interval passes (retries fall due).
            gen = conn.notifies(timeout=self.opts.poll_interval_s, stop_after=1)
            async for _ in gen:
                pass

    async def run_once(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Claim and deliver one round of due notifications; return how many rows were claimed."""
        lease = self.opts.lease_s
        async with conn.transaction():
            rows = await store_outbox.claim_due(conn, lease_s=lease, limit=self.opts.batch)
            keys = grouping.group_keys(rows)
            if keys:
                rows += await store_outbox.claim_group(
                    conn, lease_s=lease, keys=keys, claimed_ids=[r.id for r in rows]
                )
        if not rows:
            return 0
        sendable: list[list[ClaimedRow]] = []
        for members in grouping.group(rows):
            wait = await self._held_by_rate_limit(conn, members)
            if wait is None:
                sendable.append(members)
                continue
            await store_outbox.hold(conn, [m.id for m in members], wait)
            log.info(
                "notifications held by rate limit",
                receiver=members[0].receiver,
                channel=members[0].channel,
                held=len(members),
                until=wait.isoformat(),
            )
        outgoing: list[grouping.Outgoing] = []
        outcomes = []
        for members in sendable:
            try:
                outgoing.append(grouping.merge(members, self.tz))
            except Exception as exc:
                # A row nothing can be made of must not hold up every other notification.
                ids = [m.id for m in members]
                log.exception("notification cannot be rendered; giving up", notification_ids=ids)
                reason = f"cannot be rendered: {type(exc).__name__}: {exc}"[:500]
                outcomes.append(store_outbox.Outcome(ids, "given_up", reason))
        results = await asyncio.gather(*(self._deliver(o) for o in outgoing))
        for out, (state, error, delay) in zip(outgoing, results, strict=True):
            instruments.notifications(out.notification.channel, state, len(out.ids))
            outcomes.append(store_outbox.Outcome(out.ids, state, error, delay))
            if state == "sent":
                self.delivered += len(out.ids)
        await store_outbox.record_outcomes(conn, outcomes)
        return len(rows)

    async def apply_receipts(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Apply the delivery receipts providers sent: delivered, or (for a sent message) a
        failure retried by the retry policy of its severity. Return how many were applied."""
        async with conn.transaction():
            receipts = await store_receipts.pending(conn)
            for r in receipts:
                bound = log.bind(notification_id=r.notification_id, provider=r.provider)
                if r.notification_id is None:
                    bound.warning("delivery receipt for no notification of ours", status=r.status)
                elif r.delivered:
                    await store_receipts.delivered(conn, r.notification_id, r.status)
                    bound.info("provider says delivered", status=r.status)
                elif r.state == "sent":
                    await self._undelivered(conn, r, bound)
            if receipts:
                await store_receipts.applied(
                    conn, [r.id for r in receipts], [r.notification_id for r in receipts]
                )
        return len(receipts)

    async def _undelivered(
        self, conn: psycopg.AsyncConnection[Any], r: store_receipts.Pending, bound: Any
    ) -> None:
        """A receipt of failure counts as a failed attempt of the message it names."""
        assert r.notification_id is not None
        error = f"receipt from {r.provider}: {r.error or r.status}"
        decision = self._decide(r.severity, r.attempts, r.created_at, r.alert_open, None)
        if isinstance(decision, Stop):
            await store_receipts.undelivered(
                conn, r.notification_id, decision.state, f"{error} ({decision.reason})", 0.0
            )
            bound.error("provider says not delivered; " + decision.reason, error=error)
            return
        await store_receipts.undelivered(conn, r.notification_id, "failed", error, decision.delay_s)
        bound.warning(
            "provider says not delivered; will retry",
            error=error,
            retry_in_s=round(decision.delay_s, 2),
        )

    def _decide(
        self,
        severity: str,
        attempts: int,
        queued_at: dt.datetime | None,
        alert_open: bool,
        receiver_max_attempts: int | None,
    ) -> Retry | Stop:
        """After a failed attempt: retry when, or stop, by the policy of the severity (an
        unknown one is treated as info)."""
        queued = queued_at or dt.datetime.now(dt.UTC)
        return after_failure(
            self.opts.retry.get(severity) or DEFAULT_POLICIES["info"],
            attempts=attempts,
            age_s=(dt.datetime.now(dt.UTC) - queued).total_seconds(),
            alert_open=alert_open,
            receiver_max_attempts=receiver_max_attempts,
            base_s=self.opts.backoff_base_s,
            cap_s=self.opts.backoff_max_s,
        )

    async def watch_channels(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Open, update and clear channel alerts; tell the control room of each change."""
        async with conn.transaction():
            now = dt.datetime.now(dt.UTC)
            decided = channel_watch.plan(
                await store_channels.failing(conn),
                await store_channels.open_alerts(conn),
                now,
                self.opts.channel_alert_after_s,
            )
            for alert, f in decided.update:
                await store_channels.update_waiting(conn, alert.id, f)
            if not (decided.open or decided.clear):
                return  # an alert still open is kept current, and nobody is told again
            addresses = await self._control_room(conn)
            for f in decided.open:
                if await store_channels.open_alert(conn, f) is None:
                    continue
                body = channel_notice(
                    True, f.subject, f.since, f.waiting, f.last_error, now, self.tz
                )
                told = channel_watch.others(f.subject, addresses)
                await store_channels.queue(conn, told, body, "firing")
                log.error(
                    "notification channel failing",
                    channel=f.subject,
                    since=f.since.isoformat(),
                    waiting=f.waiting,
                    error=f.last_error[:200],
                    control_room_rows=len(told),
                )
            for alert in decided.clear:
                await store_channels.clear(conn, alert.id)
                body = channel_notice(
                    False, alert.subject, alert.failing_since, 0, "", now, self.tz
                )
                await store_channels.queue(
                    conn, channel_watch.others(alert.subject, addresses), body, "resolved"
                )
                log.info("notification channel delivers again", channel=alert.subject)

    async def _control_room(
        self, conn: psycopg.AsyncConnection[Any]
    ) -> list[store_channels.Address]:
        """Every control-room address: the configured webhooks and robots, then its contacts."""
        addresses = [store_channels.Address(c, r) for c, r in self.opts.control_room]
        return addresses + await store_channels.control_room_contacts(conn)

    async def fail_over(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Send contacts' stuck notifications on their next channel; tell the control room of
        people of urgent alerts who cannot be reached on any. Return the rows handled."""
        available = frozenset(c for c in failover.PERSON_CHANNELS if c in self.notifiers)
        async with conn.transaction():
            rows = await store_failover.stuck(conn, after_s=self.opts.failover_after_s)
            unreachable: dict[int, list[store_failover.Stuck]] = {}
            for row in rows:
                decision = failover.decide(row, available)
                if isinstance(decision, failover.HandOver):
                    new_id = await store_failover.hand_over(
                        conn, row, decision.channel, decision.address
                    )
                    log.warning(
                        "notification failing; sent on the person's next channel",
                        notification_id=row.id,
                        alert_id=row.alert_id,
                        contact_id=row.contact_id,
                        failed=row.channel,
                        next=decision.channel,
                        new_notification_id=new_id,
                        error=row.error[:200],
                    )
                elif isinstance(decision, failover.Unreachable):
                    unreachable.setdefault(row.contact_id, []).append(row)
                else:
                    await store_failover.settle(conn, [row.id])
            if unreachable:
                await self._tell_unreachable(conn, unreachable)
        return len(rows)

    async def _tell_unreachable(
        self, conn: psycopg.AsyncConnection[Any], by_contact: dict[int, list[store_failover.Stuck]]
    ) -> None:
        """One notice per person to the control room (but not to that person)."""
        addresses = await self._control_room(conn)
        now = dt.datetime.now(dt.UTC)
        for contact_id, rows in by_contact.items():
            first = rows[0]
            tried = [c for c in failover.PERSON_CHANNELS if c in first.tried]
            body = unreachable_notice(
                first.payload.get("alert", {}),
                first.contact_name,
                first.role,
                tried,
                first.error,
                first.first_failed_at or now,
                now,
                self.tz,
                more=len({r.alert_id for r in rows}) - 1,
            )
            told = [a for a in addresses if a.contact_id != contact_id]
            await store_channels.queue(conn, told, body, "firing")
            await store_failover.settle(conn, [r.id for r in rows])
            log.error(
                "party cannot be reached on any channel; control room told",
                contact_id=contact_id,
                role=first.role,
                alert_ids=sorted({r.alert_id for r in rows if r.alert_id is not None}),
                tried=tried,
                control_room_rows=len(told),
            )

    async def _held_by_rate_limit(
        self, conn: psycopg.AsyncConnection[Any], members: list[ClaimedRow]
    ) -> dt.datetime | None:
        """When the party may next be messaged, if its limit is reached; None: send now."""
        first = members[0]
        limit = self.opts.rate_limits.get(first.channel)
        if limit is None or grouping.exempt_from_rate_limit(members):
            return None
        max_per_window, window_s = limit
        recent = await store_outbox.recent_sent(conn, first.channel, first.receiver, window_s)
        return grouping.held_until(recent.count, recent.oldest, max_per_window, window_s)

    async def _deliver(self, out: grouping.Outgoing) -> tuple[str, str | None, float]:
        n = out.notification
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
            return self._after_failure(out, bound, str(exc))
        except Exception as exc:  # a bug in a channel must not stop the worker: retry later
            bound.exception("notifier raised an unexpected error; will retry")
            delay = backoff_s(n.attempts, self.opts.backoff_base_s, self.opts.backoff_max_s)
            return "failed", f"{type(exc).__name__}: {exc}"[:500], delay
        bound.info("notification sent")
        return "sent", None, 0.0

    def _after_failure(
        self, out: grouping.Outgoing, bound: Any, error: str
    ) -> tuple[str, str | None, float]:
        """Retry or stop, by the retry policy of the message's severity."""
        n = out.notification
        decision = self._decide(
            out.severity,
            n.attempts,
            out.queued_at,
            out.alert_open,
            self.max_attempts.get(n.receiver),
        )
        if isinstance(decision, Stop):
            bound.error(
                "notification failed; " + decision.reason, error=error, severity=out.severity
            )
            return decision.state, f"{error} ({decision.reason})"[:500], 0.0
        bound.warning(
            "notification failed; will retry",
            error=error,
            severity=out.severity,
            retry_in_s=round(decision.delay_s, 2),
        )
        return "failed", error[:500], decision.delay_s
