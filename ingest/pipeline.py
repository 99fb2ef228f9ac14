"""One batch, start to finish: decode, evaluate rules, store everything in one transaction."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import structlog

from alerts.escalation import run_escalations
from alerts.fire_119 import Fire119Options, run_unverified
from alerts.lifecycle import Outcome, apply_transitions
from alerts.planner import DispatchOptions
from devices.registry import Registry
from ingest.decode import BatchDecoder, Decoded, RawMessage, rejection
from ingest.last_seen import PendingLastSeen
from rules.engine import Point, RuleEngine, StateRow, Transition
from rules.model import RuleFile
from store import alert_actions as store_actions
from store import alerts as store_alerts
from store import commits, instruments
from store import deadletters as store_deadletters
from store import registry as store_registry
from store import rule_state as store_state
from store.partitions import (
    PartitionManager,
    apply_timescale_retention,
    day_of_ms,
    is_partitioned,
)
from store.telemetry import TelemetryWriter

log = structlog.get_logger("ingest")
_DAY_MS = 86_400_000


@dataclass(slots=True)
class Prepared:
    """A decoded and evaluated batch, ready to be written (and re-written after a failure)."""

    messages: list[RawMessage]
    decoded: Decoded
    transitions: list[Transition]
    registry: Registry
    state: list[StateRow]
    heard_ms: int = 0  # when the batch was received (decoded)
    # decoded.last_seen as arrays (device numbers, newest reading ms), made once in prepare().
    seen_nums: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    seen_ms: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(slots=True)
class BatchResult:
    """What one committed batch did."""

    messages: int = 0
    readings: int = 0
    inserted: int = 0
    events: int = 0
    rejected: int = 0
    alerts: Outcome = field(default_factory=Outcome)

    @classmethod
    def merged(cls, parts: list[BatchResult]) -> BatchResult:
        """One result for a batch that was committed in several parts."""
        out = cls()
        for p in parts:
            out.messages += p.messages
            out.readings += p.readings
            out.inserted += p.inserted
            out.events += p.events
            out.rejected += p.rejected
            for name in ("opened", "repeated", "cleared", "notifications"):
                setattr(out.alerts, name, getattr(out.alerts, name) + getattr(p.alerts, name))
        return out


class Pipeline:
    """Holds the registry, the rule engine and the writers for one ingest worker."""

    def __init__(
        self,
        decoder: BatchDecoder,
        engine: RuleEngine,
        registry: Registry,
        dispatch: DispatchOptions,
        *,
        registry_refresh_s: float = 10.0,
        partitions_ahead_days: int = 3,
        retention_days: int = 400,
        last_seen_flush_s: float = 5.0,
        silence_check_s: float = 5.0,
        fire_119: Fire119Options | None = None,
    ) -> None:
        self.decoder = decoder
        self.fire_119 = fire_119 or Fire119Options()
        self.engine = engine
        self.registry = registry
        self.dispatch = dispatch
        self.writer = TelemetryWriter()
        self.partitions = PartitionManager()
        self.partitioned: bool | None = None
        self.registry_refresh_s = registry_refresh_s
        self.partitions_ahead_days = partitions_ahead_days
        self.retention_days = retention_days
        self.last_seen_flush_s = last_seen_flush_s
        self._registry_at = time.monotonic()  # when it was last loaded
        self._registry_checked_at = time.monotonic()  # when its version was last looked at
        self._registry_version: int | None = None
        self._maintained_day: dt.date | None = None
        self._pending_seen = PendingLastSeen()
        self._seen_flushed_at = 0.0
        self.silence_check_s = silence_check_s
        self._silence_checked_at = time.monotonic()
        self._pending_silence: list[Transition] = []
        self._pending_state: list[StateRow] = []
        self._action_cursor = 0  # the last operator action (alert_events id) the engine knows
        # write() runs on the writer thread, tick() on the batch thread: a ledger lane each.
        self._write_lane = commits.Lane()
        self._tick_lane = commits.Lane()

    def start(self, conn: psycopg.Connection[Any]) -> None:
        """Learn partitions and restore rule state from alerts that are still open."""
        self.partitioned = is_partitioned(conn)
        if self.partitioned:
            self.partitions.load(conn)
        else:
            apply_timescale_retention(conn, self.retention_days)
        self._maintain(conn)
        self.engine.silence_from_ms = int(time.time() * 1000)
        self._learn_actions(conn)
        rows = store_state.load(conn)
        loaded = self.engine.load_state(StateRow(*r) for r in rows)
        seen = store_state.device_last_seen(conn)
        if seen:
            nums, times = zip(*seen, strict=True)
            self.engine.seen(np.asarray(nums, np.int32), np.asarray(times, np.int64))
        # Alerts opened before rule state was kept (or by an older version) still count as open.
        known = {(r[0], r[1]) for r in rows}
        restored = 0
        for rule_id, num, last_seen in store_alerts.open_breaches(conn):
            if (rule_id, num) not in known:
                self.engine.restore(rule_id, num, int(last_seen.timestamp() * 1000))
                restored += 1
        log.info(
            "pipeline ready",
            devices=len(self.registry.by_id),
            rule_states=loaded,
            restored_from_alerts=restored,
            rules=len(self.engine.rules),
            backend="native" if self.partitioned else "timescale",
        )

    def _learn_actions(self, conn: psycopg.Connection[Any]) -> None:
        """Tell the engine of operators' resolves and closes since the last look (rules with
        `rearm` only): an API in another process acted, the engine learns within one batch."""
        if not self.engine.rearms:
            return
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.engine.max_rearm_s)
        for a in store_actions.operator_actions(conn, self._action_cursor, since):
            self.engine.operator_closed(a.rule_id, a.device_num, int(a.at.timestamp() * 1000))
            self._action_cursor = a.id

    def reload_rules(self, rule_file: RuleFile) -> None:
        """Swap in an engine for a new rule file, carrying state of the rules that remain."""
        self.engine = self.engine.reloaded(rule_file, self.registry)
        log.info("rules reloaded", rules=len(self.engine.rules))

    def tick_due(self) -> bool:
        """Whether tick() has work to do now (it needs no batch in flight)."""
        return bool(self._pending_silence) or (
            time.monotonic() - self._silence_checked_at >= self.silence_check_s
        )

    def tick(self, conn: psycopg.Connection[Any], resolve: commits.Resolver) -> Outcome | None:
        """Periodic work between batches: escalations, fire alarms left unverified and deadman
        checks (own transactions);
        resolve() finds out whether a transaction whose connection died committed."""
        if not self.tick_due():
            return None
        self._silence_checked_at = time.monotonic()
        run_escalations(conn, self.dispatch)
        run_unverified(conn, self.dispatch, self.fire_119)
        # A silent device sends no batch: actions on its deadman alert are learned here.
        self._learn_actions(conn)
        self.engine.rearm_due(int(time.time() * 1000))
        # Transitions of a failed write are kept and written first next time: never lost.
        self._pending_silence += self.engine.check_silence(int(time.time() * 1000))
        self._pending_state += self.engine.take_dirty()
        if not self._pending_silence and not self._pending_state:
            return None
        try:
            with self._tick_lane.transaction(conn):
                store_state.save(conn, [_state_tuple(r) for r in self._pending_state])
                out = apply_transitions(conn, self._pending_silence, self.registry, self.dispatch)
        except commits.CommitUnknown as exc:
            if not resolve(partial(self._tick_lane.committed, mark=exc.mark)):
                raise
            out = Outcome()  # it went in; what it did was not heard
        self._pending_silence, self._pending_state = [], []
        instruments.ALERTS_OPENED.inc(out.opened)
        return out

    def refresh_registry(self, conn: psycopg.Connection[Any]) -> None:
        """Reload devices (new ones, changed attributes) and re-resolve thresholds."""
        # The version first: a change made during the load is seen at the next look.
        self._registry_version = store_registry.registry_version(conn)
        self.registry = store_registry.load_registry(conn)
        self.engine.update_registry(self.registry)
        self._registry_at = time.monotonic()

    def _registry_changed(self, conn: psycopg.Connection[Any]) -> bool:
        """Every registry_refresh_s, whether the registry changed since it was loaded: one row
        read instead of reloading (10,000 devices took ~0.2 s of the batch thread each time)."""
        now = time.monotonic()
        if now - self._registry_checked_at <= self.registry_refresh_s:
            return False
        self._registry_checked_at = now
        return store_registry.registry_version(conn) != self._registry_version

    def _maintain(self, conn: psycopg.Connection[Any]) -> None:
        today = dt.datetime.now(dt.UTC).date()
        if not self.partitioned or self._maintained_day == today:
            return
        self.partitions.ensure_ahead(conn, today, self.partitions_ahead_days)
        dropped = self.partitions.drop_expired(conn, today, self.retention_days)
        if dropped:
            log.info("dropped partitions past retention", partitions=dropped)
        self._maintained_day = today

    def prepare(self, conn: psycopg.Connection[Any], messages: list[RawMessage]) -> Prepared:
        """Decode and evaluate; runs once per batch, whatever happens to the write."""
        # A replay usually follows a registry fix: it must see the registry as it is now.
        replaying = any(m.replay_of is not None for m in messages)
        if replaying or self._registry_changed(conn):
            self.refresh_registry(conn)
        now_ms = int(time.time() * 1000)
        decoded = self.decoder.decode(messages, self.registry, now_ms)
        if any(r.reason == "unknown_device" for r in decoded.rejections) and (
            time.monotonic() - self._registry_at > 1.0
        ):
            # A device registered since the last refresh must not be dead-lettered.
            self.refresh_registry(conn)
            decoded = self.decoder.decode(messages, self.registry, now_ms)
        ev = decoded.events
        seen = decoded.last_seen
        nums = np.fromiter(seen.keys(), np.int32, len(seen))
        times = np.fromiter(seen.values(), np.int64, len(seen))
        self._learn_actions(conn)
        # Rule state moves now but counts only once write() commits; discard() undoes it.
        self.engine.begin()
        try:
            transitions = self.engine.evaluate(
                decoded.dev,
                decoded.metric,
                decoded.ts,
                decoded.value,
                np.fromiter((e.device_num for e in ev), np.int32, len(ev)),
                np.fromiter((e.kind for e in ev), np.int16, len(ev)),
                np.fromiter((e.ts_ms for e in ev), np.int64, len(ev)),
                [Point(e.loop, e.point, e.text) for e in ev],
            )
            if seen:
                # Heartbeats (telemetry with no metrics) are signs of life that evaluate() never
                # sees; devices with readings were already heard there, so nothing clears twice.
                transitions += self.engine.heard(nums, times)
                transitions.sort(key=lambda tr: tr.ts_ms)
        except BaseException:
            self.engine.abandon()  # a batch in flight before this one may still commit
            raise
        for r in decoded.rejections:
            log.warning(
                "message rejected",
                device_id=r.device_id,
                topic=r.topic,
                reason=r.reason,
                detail=r.detail,
            )
        return Prepared(
            messages,
            decoded,
            transitions,
            self.registry,
            self.engine.take_dirty(),
            now_ms,
            nums,
            times,
        )

    def discard(self) -> None:
        """Forget every prepared batch not yet committed: rule state goes back to the last
        committed batch (a batch prepared after a failed one rested on it: prepare it again)."""
        self.engine.rollback()

    def abandon(self) -> None:
        """Forget the newest prepared batch only (it goes back to the inbox, to be prepared
        again later); batches prepared before it stay in flight."""
        self.engine.abandon()

    def committed(self) -> None:
        """The oldest prepared batch committed: its rule state is kept (call in prepare order,
        on the thread that prepares)."""
        self.engine.commit()

    def write(
        self, conn: psycopg.Connection[Any], p: Prepared, resolve: commits.Resolver
    ) -> BatchResult:
        """Store a prepared batch in one transaction. Raises when it did not commit: then it is
        written again, so when the connection dies with the outcome unknown, resolve() finds
        out, and a batch that did commit is not written twice (its alerts would be).

        It may run on another thread than prepare() (the next batch is prepared meanwhile): it
        touches no rule state, only what is written and the writer's own bookkeeping."""
        d = p.decoded
        self._maintain(conn)
        if self.partitioned:
            days = {day_of_ms(int(x)) for x in np.unique(d.ts // _DAY_MS) * _DAY_MS}
            days.update(day_of_ms(e.ts_ms) for e in d.events)
            self.partitions.ensure(conn, days)
        self._pending_seen.add(p.seen_nums, p.seen_ms, p.heard_ms)
        res = BatchResult(messages=len(p.messages), readings=d.readings, rejected=len(d.rejections))
        self.writer.prepare(conn)
        flushed = False
        now = time.monotonic()
        try:
            with instruments.COMMIT_SECONDS.time(), self._write_lane.transaction(conn):
                flushed = self._write_in(conn, p, res, now)
        except commits.CommitUnknown as exc:
            if not resolve(partial(self._write_lane.committed, mark=exc.mark)):
                raise
            log.warning(
                "the connection died during a batch's commit, and the commit went through;"
                " the batch is not written again",
                messages=res.messages,
            )
        instruments.batch_committed(res.messages, d.rejections, res.alerts.opened)
        if flushed:
            self._pending_seen.clear()
            self._seen_flushed_at = now
        duplicates = d.readings - res.inserted
        if duplicates:
            # Expected after a crash or reconnect: the broker redelivers what was never acked.
            log.info("redelivered readings skipped", duplicates=duplicates, readings=d.readings)
        return res

    def _write_in(
        self, conn: psycopg.Connection[Any], p: Prepared, res: BatchResult, now: float
    ) -> bool:
        """The batch's statements, inside write()'s transaction; True if last_seen was flushed."""
        d = p.decoded
        res.inserted = self.writer.write_readings(conn, d.dev, d.metric, d.ts, d.value)
        if d.events:
            res.events = self.writer.write_events(
                conn,
                [
                    (
                        dt.datetime.fromtimestamp(e.ts_ms / 1000, dt.UTC),
                        e.device_num,
                        e.seq,
                        e.kind,
                        e.loop,
                        e.point,
                        e.text,
                    )
                    for e in d.events
                ],
            )
        if d.rejections:
            store_deadletters.write_rejections(conn, d.rejections)
        replayed = [m.replay_of for m in p.messages if m.replay_of is not None]
        if replayed:
            store_deadletters.mark_replayed(conn, replayed)
        if d.statuses:
            store_registry.set_status(conn, d.statuses)
        flushed = False
        if self._pending_seen and now - self._seen_flushed_at >= self.last_seen_flush_s:
            store_registry.touch_last_seen(conn, *self._pending_seen.pending())
            flushed = True
        res.alerts = apply_transitions(conn, p.transitions, p.registry, self.dispatch)
        store_state.save(conn, [_state_tuple(r) for r in p.state])
        return flushed

    def dead_letter(
        self, conn: psycopg.Connection[Any], msg: RawMessage, reason: str, detail: str
    ) -> None:
        """Store one message as a dead letter in its own transaction; as hex if even that fails."""
        device_id = self.decoder.device_id_of(msg.topic)
        limit = self.decoder.limits.max_payload_bytes
        r = rejection(msg.topic, device_id, reason, detail, msg.payload, limit, msg.replay_of)
        replayed = [] if msg.replay_of is None else [msg.replay_of]
        try:
            with conn.transaction():
                store_deadletters.write_rejections(conn, [r])
                store_deadletters.mark_replayed(conn, replayed)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            # Last resort: nothing of the message's own text goes in, only hex and the reason.
            log.error("dead letter refused; storing its payload as hex", error=str(exc)[:200])
            hexed = rejection(
                msg.topic.encode("utf-8", "backslashreplace").hex()[:1000],
                None,
                reason,
                f"payload and topic stored as hex; {detail}",
                msg.payload.hex().encode(),
                2 * limit,
                msg.replay_of,
            )
            with conn.transaction():
                store_deadletters.write_rejections(conn, [hexed])
                store_deadletters.mark_replayed(conn, replayed)
        instruments.batch_committed(1, [r], 0)

    def flush_last_seen(self, conn: psycopg.Connection[Any]) -> None:
        """Write pending last_seen times now (at shutdown)."""
        if self._pending_seen:
            with conn.transaction():
                store_registry.touch_last_seen(conn, *self._pending_seen.pending())
            self._pending_seen.clear()


def _state_tuple(r: StateRow) -> store_state.Row:
    return (r.rule_id, r.device_num, r.raw, r.active, r.since_ms, r.last_ts)
