"""The MQTT consumer: QoS 1, persistent MQTT 5 sessions, acks sent only after the batch commits.

Two sessions (ingest/session.py): telemetry in one, events and status in the other, so a
telemetry backlog in the broker never delays a fire alarm; the inbox (ingest/inbox.py) puts
urgent messages into the very next batch.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog

from ingest.decode import RawMessage
from ingest.inbox import Inbox
from ingest.pipeline import BatchResult, Pipeline, Prepared
from ingest.session import Session, SessionOptions
from rules.model import RuleFile
from store import commits
from store import deadletters as store_deadletters
from store.health import Outage

log = structlog.get_logger("ingest")

TOPIC_KINDS = ("telemetry", "event", "status")
URGENT_KINDS = ("event", "status")
# The events session's client id (and broker account) is ingest's with this suffix.
EVENTS_SUFFIX = "-events"


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """Broker, session and batching settings of one ingest worker."""

    host: str
    port: int
    client_id: str
    topic_prefix: str = "fs/v1"
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400
    receive_maximum: int = 65535
    shared_group: str | None = None
    batch_max: int = 2000
    batch_wait_ms: int = 50
    retry_max_s: float = 2.0
    # TLS to the broker (mqtt.tls). ca_file None: the system's trust store.
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_check_hostname: bool = True


@dataclass(slots=True)
class _Received:
    # Not frozen: one is made per message, and a frozen dataclass costs four times as much.
    msg: RawMessage
    qos: int
    session: Session | None  # None: a replayed dead letter, nothing to ack
    generation: int
    received_at: float  # time.monotonic() when it came off the socket


class Consumer:
    """Receives on the sessions' network threads, batches and commits on its own thread, then
    acks on the session that delivered each message."""

    def __init__(
        self,
        opts: ConsumerOptions,
        pipeline: Pipeline,
        connect_db: Callable[[], psycopg.Connection[Any]],
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.opts = opts
        self.pipeline = pipeline
        self.connect_db = connect_db
        self.on_batch = on_batch
        self._inbox: Inbox[_Received] = Inbox()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The batch thread's connection (registry, operator actions, replays, periodic checks)
        # and the writer thread's (batches): the next batch is prepared while one is written.
        self._conn: psycopg.Connection[Any] | None = None
        self._wconn: psycopg.Connection[Any] | None = None
        self._writer = futures.ThreadPoolExecutor(1, thread_name_prefix="ingest-writer")
        # When the first message of each batch in hand arrived, oldest first.
        self._held: deque[float] = deque()
        self._reload: Callable[[], RuleFile] | None = None
        self._replays_checked_at = 0.0
        self.committed_messages = 0
        # Set when the batch thread ended by an unexpected exception: a supervisor acts on it.
        self.failure: BaseException | None = None
        # TLS to the broker: only the given CA (or the system's), TLS 1.2 or later.
        self.tls_context: ssl.SSLContext | None = None
        if opts.tls:
            ctx = ssl.create_default_context(cafile=opts.tls_ca_file)
            if opts.tls_cert_file:
                ctx.load_cert_chain(opts.tls_cert_file, opts.tls_key_file)
            # The certificate must name opts.host unless explicitly turned off (the chain is
            # checked either way).
            ctx.check_hostname = opts.tls_check_hostname
            self.tls_context = ctx
        prefix = opts.topic_prefix

        def session(name: str, suffix: str, kinds: tuple[str, ...]) -> Session:
            others = [k for k in TOPIC_KINDS if k not in kinds]
            return Session(
                SessionOptions(
                    name=name,
                    host=opts.host,
                    port=opts.port,
                    client_id=opts.client_id + suffix,
                    topics=[f"{prefix}/+/{k}" for k in kinds],
                    not_topics=[f"{prefix}/+/{k}" for k in others],
                    username=opts.username + suffix if opts.username else None,
                    password=opts.password,
                    keepalive_s=opts.keepalive_s,
                    session_expiry_s=opts.session_expiry_s,
                    receive_maximum=opts.receive_maximum,
                    shared_group=opts.shared_group,
                    tls_context=self.tls_context,
                    tls_check_hostname=opts.tls_check_hostname,
                ),
                self._deliver,
            )

        # The telemetry session keeps ingest's own client id (and its queued messages).
        self.telemetry = session("telemetry", "", ("telemetry",))
        self.events = session("events", EVENTS_SUFFIX, URGENT_KINDS)
        self.sessions = (self.events, self.telemetry)

    def _deliver(
        self, got: list[tuple[str, bytes, int, int]], session: Session, generation: int
    ) -> None:
        now = time.monotonic()
        telemetry: list[_Received] = []
        urgent: list[_Received] = []
        for topic, payload, mid, qos in got:
            (urgent if _urgent_topic(topic) else telemetry).append(
                _Received(RawMessage(topic, payload, mid), qos, session, generation, now)
            )
        self._inbox.put_many(urgent, urgent=True)
        self._inbox.put_many(telemetry, urgent=False)

    # --- lifecycle ---

    def start(self) -> None:
        """Connect to the database and the broker and start the batch thread."""
        self._conn = self._connect_db_retrying()
        self.pipeline.refresh_registry(self._conn)
        self.pipeline.start(self._conn)
        for s in self.sessions:
            s.start()
        self._thread = threading.Thread(target=self._guarded, name="ingest-batcher", daemon=True)
        self._thread.start()

    @property
    def broker_connected(self) -> bool:
        """Whether both sessions are connected and subscribed."""
        return all(s.connected() for s in self.sessions)

    def alive(self) -> bool:
        """Whether the batch thread is running (False after start when it died or stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def lag_s(self) -> float:
        """Age of the oldest message received but not yet committed (0 when none waits)."""
        held = self._held
        oldest = [t for t in (held[0] if held else None, self._inbox.oldest()) if t is not None]
        return max(0.0, time.monotonic() - min(oldest)) if oldest else 0.0

    def wait_connected(self, timeout: float) -> bool:
        """Wait until both sessions are up and their subscriptions acknowledged."""
        deadline = time.monotonic() + timeout
        return all(s.wait_connected(max(0.0, deadline - time.monotonic())) for s in self.sessions)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, commit and ack what was received, then disconnect."""
        for s in self.sessions:
            s.accepting = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._writer.shutdown(wait=True)
        for s in self.sessions:
            s.stop()
        if self._wconn is not None:
            with contextlib.suppress(psycopg.Error):
                self.pipeline.flush_last_seen(self._wconn)
            self._wconn.close()
        if self._conn is not None:
            self._conn.close()
        log.info("ingest stopped", committed_messages=self.committed_messages)

    # --- batch thread ---

    def _collect(self) -> list[_Received]:
        return self._inbox.take(self.opts.batch_max, self.opts.batch_wait_ms / 1000)

    def _replays(self, room: int) -> list[_Received]:
        """Dead letters an operator asked to replay (`deadletters replay`), at most once a second."""
        now = time.monotonic()
        if room <= 0 or now - self._replays_checked_at < 1.0 or not self._conn or self._conn.closed:
            return []
        self._replays_checked_at = now
        try:
            claimed = store_deadletters.claim_replays(self._conn, room)
        except psycopg.Error as exc:
            log.warning("could not look for dead letters to replay", error=str(exc).strip()[:200])
            return []
        if claimed:
            log.info("replaying dead letters", messages=len(claimed))
        # QoS 0: nothing to ack; the claim's lease brings them back if this batch never commits.
        return [
            _Received(RawMessage(q.topic, q.payload, 0, q.id), 0, None, 0, now) for q in claimed
        ]

    def request_reload(self, load: Callable[[], RuleFile]) -> None:
        """Ask the batch thread to load and swap in new rules between two batches."""
        self._reload = load

    def _between_batches(self) -> None:
        load, self._reload = self._reload, None
        if load is not None:
            try:
                self.pipeline.reload_rules(load())
            except Exception as exc:
                # A broken rule file must not stop ingest: keep the rules that work.
                log.error("rule reload failed; keeping the current rules", error=str(exc))
        if self._conn is None or self._conn.closed:
            return
        try:
            self.pipeline.tick(self._conn, self._went_through)
        except psycopg.Error as exc:
            log.warning("periodic checks failed; will retry", error=str(exc).strip()[:200])

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            # Unacked messages are redelivered, so dying is safe; dying unseen is not.
            self.failure = exc
            log.exception("ingest batch thread died")

    def _run(self) -> None:
        # The batch in flight: written and acked on the writer thread while the next batch is
        # decoded and evaluated here, so the broker, this process and PostgreSQL work at once.
        flying: _InFlight | None = None
        may_yield = True  # a batch put back for a fire alarm is not put back again
        try:
            while True:
                if flying is not None and (
                    self._reload is not None or self._stop.is_set() or self.pipeline.tick_due()
                ):
                    # Rule reloads, periodic checks and stopping need nothing in flight.
                    self._settle(flying)
                    flying = None
                if self._stop.is_set() and self._inbox.empty():
                    return
                if flying is None:
                    self._between_batches()
                batch = self._collect()
                batch += self._replays(self.opts.batch_max - len(batch))
                if not batch:
                    if flying is not None and flying.future.done():
                        self._settle(flying)
                        flying = None
                    continue
                self._held.append(batch[0].received_at)
                messages = [r.msg for r in batch]
                urgent = any(_urgent_topic(m.topic) for m in messages)
                prepared, error = self._attempt(messages)
                if (
                    flying is not None
                    and prepared is not None
                    and may_yield
                    and not urgent
                    and self._urgent_arrives(flying)
                ):
                    # A fire alarm came in while this telemetry batch waited for the one in
                    # flight: it goes back to the inbox, and the fire alarm is written next.
                    self.pipeline.abandon()
                    self._inbox.put_back(batch, lambda r: _urgent_topic(r.msg.topic))
                    self._held.pop()
                    may_yield = False
                    continue
                may_yield = True
                if flying is not None:
                    done, flying = flying, None
                    if not self._settle(done) and error is None:
                        # The batch before was refused and bisected; this batch's rule state
                        # rested on it, so it is evaluated again (a fire alarm the refused
                        # message seemed to have raised must still raise).
                        prepared, error = self._attempt(messages)
                if prepared is None:
                    # Something in it that decode or the rules could not handle: bisect it.
                    self._bisected(batch, error or RuntimeError("batch not prepared"))
                    continue
                future = self._writer.submit(self._write_and_ack, batch, prepared)
                future.add_done_callback(lambda _: self._inbox.wake())
                flying = _InFlight(batch, future)
                if urgent:
                    # Nothing is prepared behind a fire alarm's batch: decoding the next
                    # telemetry batch meanwhile would hold the GIL against its commit and its
                    # webhook (+90 ms at p50 behind a 120,000-reading backlog).
                    self._settle(flying)
                    flying = None
        except _Stopping:
            if flying is not None:
                # It may still commit (and ack); either way nothing of it is lost.
                futures.wait([flying.future])
            self.pipeline.discard()
            log.warning(
                "stopping with an uncommitted batch; the broker will redeliver it",
                batches=len(self._held),
            )

    def _urgent_arrives(self, flying: _InFlight) -> bool:
        """Wait for the batch in flight; True when an urgent message (a fire alarm, a status)
        arrived meanwhile (火警优先, even over a telemetry batch that is ready to go)."""
        while True:
            if self._inbox.wait_urgent(flying.future.done, 1.0):
                return True
            if flying.future.done():
                return False

    def _settle(self, flying: _InFlight) -> bool:
        """Wait for the batch in flight. True: it committed (and was acked). False: the database
        refused it, it was bisected, and every batch prepared after it was undone."""
        try:
            result = flying.future.result()
        except _Stopping:
            raise
        except Exception as exc:
            self.pipeline.discard()
            self._bisected(flying.batch, exc)
            return False
        self.pipeline.committed()
        self._done(flying.batch, result)
        return True

    def _bisected(self, batch: list[_Received], exc: Exception) -> None:
        """Commit what the database takes of a refused batch and dead-letter the rest; ack all."""
        messages = [r.msg for r in batch]
        log.error(
            "database refused a batch; isolating the messages it refuses",
            messages=len(messages),
            error=_error_text(exc),
        )
        result = self._isolate(messages, exc)
        self._ack(batch)
        self._done(batch, result)

    def _done(self, batch: list[_Received], result: BatchResult) -> None:
        self.committed_messages += len(batch)
        if self._held:
            self._held.popleft()
        if self.on_batch is not None:
            self.on_batch(result)

    def in_hand(self) -> int:
        """Batches taken from the inbox and not yet committed (being prepared, or written)."""
        return len(self._held)

    def _ack(self, batch: list[_Received]) -> None:
        """Ack a committed batch, each message only on the connection that delivered it (a
        message of an earlier connection comes again, and is recognised as stored)."""
        by_connection: dict[tuple[Session, int], list[int]] = defaultdict(list)
        for r in batch:
            if r.qos > 0 and r.session is not None:
                by_connection[(r.session, r.generation)].append(r.msg.mid)
        for (session, generation), mids in by_connection.items():
            session.ack(mids, generation)

    def _connect_db_retrying(self) -> psycopg.Connection[Any]:
        outage = _Outage("database unavailable; probing until it answers")
        while True:
            try:
                conn = self.connect_db()
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    raise
                # Probe at a short interval, not a long backoff: work resumes soon after it is back.
                self._stop.wait(outage.failed(exc, self.opts.retry_max_s))
                continue
            outage.over()
            return conn

    def _attempt(self, messages: list[RawMessage]) -> tuple[Prepared | None, Exception | None]:
        """Prepare a batch, or say why it could not be (stopping still raises)."""
        try:
            return self._prepare(messages), None
        except _Stopping:
            raise
        except Exception as exc:
            return None, exc

    def _prepare(self, messages: list[RawMessage]) -> Prepared:
        """Decode and evaluate on the batch thread's connection; wait out transient failures."""
        outage = _Outage("database unavailable while preparing a batch; retrying")
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect_db_retrying()
                prepared = self.pipeline.prepare(self._conn, messages)
                outage.over()
                return prepared
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    raise _Stopping from exc
                if self._conn is not None and self._conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.close()
                self._stop.wait(outage.failed(exc, self.opts.retry_max_s, messages=len(messages)))

    def _write_and_ack(self, batch: list[_Received], prepared: Prepared) -> BatchResult:
        """The writer thread's task: commit a prepared batch, then ack it at once."""
        result = self._write_prepared(prepared)
        self._ack(batch)
        return result

    def _write_prepared(self, prepared: Prepared) -> BatchResult:
        """Write in one transaction on the writer's connection; wait out transient failures (the
        same prepared batch is written again: same rule state), raise the rest."""
        outage = _Outage("database write failed; retrying batch")
        while True:
            try:
                if self._wconn is None or self._wconn.closed:
                    self._wconn = self._connect_db_retrying()
                result = self.pipeline.write(self._wconn, prepared, self._went_through)
                outage.over()
                return result
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    raise _Stopping from exc
                # Lost connection, serialization failure, deadlock, full disk: nothing is acked,
                # so nothing is lost.
                conn = self._wconn
                if conn is not None and conn.closed is False:
                    with contextlib.suppress(psycopg.Error):
                        conn.rollback()
                if conn is not None and conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                self._stop.wait(
                    outage.failed(exc, self.opts.retry_max_s, messages=len(prepared.messages))
                )
            except BaseException:
                if self._wconn is not None and not self._wconn.closed:
                    with contextlib.suppress(psycopg.Error):
                        self._wconn.rollback()
                raise

    def _went_through(self, ask: commits.Ask) -> bool:
        """Whether a transaction whose connection died committed: ask() on a connection of its
        own, once the database answers again."""
        outage = _Outage("database unavailable while confirming a commit; retrying")
        while True:
            conn = self._connect_db_retrying()
            try:
                went = ask(conn)
                outage.over()
                return went
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    # Nothing of it is acked: the broker redelivers it to an engine that starts
                    # from the committed rule state, which tells a stored batch apart.
                    raise _Stopping from exc
                self._stop.wait(outage.failed(exc, self.opts.retry_max_s))
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.close()

    def _write(self, messages: list[RawMessage]) -> BatchResult:
        """Prepare and write one part of a refused batch, nothing else in flight (bisection)."""
        prepared = self._prepare(messages)
        try:
            result = self._write_prepared(prepared)
        except BaseException:
            self.pipeline.discard()
            raise
        self.pipeline.committed()
        return result

    def _isolate(self, messages: list[RawMessage], exc: Exception) -> BatchResult:
        """Bisect a refused batch: commit every half that goes in, dead-letter single refusals."""
        if len(messages) == 1:
            return self._refused(messages[0], exc)
        mid = len(messages) // 2
        parts = []
        for half in (messages[:mid], messages[mid:]):
            try:
                parts.append(self._write(half))
            except _Stopping:
                raise
            except Exception as inner:
                parts.append(self._isolate(half, inner))
        return BatchResult.merged(parts)

    def _refused(self, msg: RawMessage, exc: Exception) -> BatchResult:
        """Dead-letter one message the database refuses, so that it cannot stall the rest."""
        log.error(
            "message refused by the database; dead-lettered",
            topic=msg.topic[:200],
            error=_error_text(exc),
        )
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect_db_retrying()
                self.pipeline.dead_letter(self._conn, msg, "storage_refused", _error_text(exc))
                return BatchResult(messages=1, rejected=1)
            except psycopg.OperationalError as transient:
                if self._stop.is_set():
                    raise _Stopping from transient
                self._stop.wait(0.5)


def _urgent_topic(topic: str) -> bool:
    # Everything but telemetry (events, status, a topic no one foresaw) goes first.
    return not topic.endswith("/telemetry")


@dataclass(slots=True)
class _InFlight:
    """A prepared batch handed to the writer thread."""

    batch: list[_Received]
    future: Future[BatchResult]


class _Stopping(Exception):
    """Raised out of a retry loop when the consumer is asked to stop."""


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class _Outage:
    """Probing intervals during an outage (0.1 s doubling to a cap), logged by Outage's rule."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.outage = Outage()
        self.delay = 0.1
        self.attempts = 0

    def failed(self, exc: BaseException, cap_s: float, **fields: Any) -> float:
        """Note a failed attempt; return how long to wait before the next."""
        self.attempts += 1
        down_for = self.outage.failed()
        if down_for is not None:
            log.warning(
                self.what,
                error=str(exc).strip()[:200],
                for_s=round(down_for, 1),
                attempts=self.attempts,
                **fields,
            )
        delay, self.delay = self.delay, min(self.delay * 2, cap_s)
        return delay

    def over(self) -> None:
        """Note success; log how long the outage lasted, if there was one."""
        lasted = self.outage.recovered()
        if lasted is not None:
            log.info("database reachable again", after_s=round(lasted, 1), attempts=self.attempts)
