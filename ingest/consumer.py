"""The MQTT consumer: QoS 1, persistent MQTT 5 session, acks sent only after the batch commits."""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.decode import RawMessage
from ingest.mqtt_client import BufferedClient
from ingest.pipeline import BatchResult, Pipeline
from rules.model import RuleFile
from store import deadletters as store_deadletters
from store.health import Outage

log = structlog.get_logger("ingest")

TOPIC_KINDS = ("telemetry", "event", "status")


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


@dataclass(frozen=True, slots=True)
class _Received:
    msg: RawMessage
    qos: int
    generation: int
    received_at: float  # time.monotonic() when it came off the socket


class Consumer:
    """Receives on paho's network thread, batches and commits on its own thread, then acks."""

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
        self._queue: queue.Queue[_Received] = queue.Queue()
        self._generation = 0
        self._connected = threading.Event()
        self._accepting = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._reload: Callable[[], RuleFile] | None = None
        # When the oldest message of the batch being written arrived (None: no batch in hand).
        self._batch_since: float | None = None
        self._replays_checked_at = 0.0
        self.committed_messages = 0
        # Set when the batch thread ended by an unexpected exception: a supervisor acts on it.
        self.failure: BaseException | None = None
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=opts.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if opts.username:
            client.username_pw_set(opts.username, opts.password)
        # TLS to the broker: only the given CA (or the system's), TLS 1.2 or later.
        self.tls_context: ssl.SSLContext | None = None
        if opts.tls:
            ctx = ssl.create_default_context(cafile=opts.tls_ca_file)
            if opts.tls_cert_file:
                ctx.load_cert_chain(opts.tls_cert_file, opts.tls_key_file)
            client.tls_set_context(ctx)
            # The certificate must name opts.host unless explicitly turned off.
            client.tls_insecure_set(not opts.tls_check_hostname)
            self.tls_context = ctx
        # Reconnect soon after the broker is back: a long backoff only delays alarms.
        client.reconnect_delay_set(1, 2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    # --- paho callbacks (network thread) ---

    def _topics(self) -> list[tuple[str, SubscribeOptions]]:
        share = f"$share/{self.opts.shared_group}/" if self.opts.shared_group else ""
        return [
            (f"{share}{self.opts.topic_prefix}/+/{kind}", SubscribeOptions(qos=1))
            for kind in TOPIC_KINDS
        ]

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused connection", reason=str(reason))
            return
        self._generation += 1
        log.info(
            "connected to broker",
            session_present=flags.session_present,
            host=self.opts.host,
            port=self.opts.port,
        )
        # Subscribe every time: harmless with a session present, needed without one.
        client.subscribe(self._topics())

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for rc in reasons:
            if rc.is_failure:
                log.warning("subscription refused", reason=str(rc))
        log.info("subscribed", topics=[t for t, _ in self._topics()])
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        # Acks for messages of that connection are void; the broker will redeliver them.
        self._generation += 1
        if not self._stop.is_set():
            log.warning("disconnected from broker; reconnecting", reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not self._accepting:
            return  # not acked: redelivered to the next session
        self._queue.put(
            _Received(
                RawMessage(message.topic, bytes(message.payload), message.mid),
                message.qos,
                self._generation,
                time.monotonic(),
            )
        )

    # --- lifecycle ---

    def start(self) -> None:
        """Connect to the database and the broker and start the batch thread."""
        self._conn = self._connect_db_retrying()
        self.pipeline.refresh_registry(self._conn)
        self.pipeline.start(self._conn)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.opts.session_expiry_s
        props.ReceiveMaximum = self.opts.receive_maximum
        self.client.connect_async(
            self.opts.host,
            self.opts.port,
            keepalive=self.opts.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._guarded, name="ingest-batcher", daemon=True)
        self._thread.start()

    @property
    def broker_connected(self) -> bool:
        """Whether the broker connection is up and subscribed."""
        return self._connected.is_set()

    def alive(self) -> bool:
        """Whether the batch thread is running (False after start when it died or stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def lag_s(self) -> float:
        """Age of the oldest message received but not yet committed (0 when none waits)."""
        oldest = [self._batch_since] if self._batch_since is not None else []
        with self._queue.mutex:
            if self._queue.queue:
                oldest.append(self._queue.queue[0].received_at)
        return max(0.0, time.monotonic() - min(oldest)) if oldest else 0.0

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the broker connection is up and the subscriptions are acknowledged."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, commit and ack what was received, then disconnect."""
        self._accepting = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.pipeline.flush_last_seen(self._conn)
            self._conn.close()
        log.info("ingest stopped", committed_messages=self.committed_messages)

    # --- batch thread ---

    def _collect(self) -> list[_Received]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.opts.batch_wait_ms / 1000
        while len(batch) < self.opts.batch_max:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

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
            _Received(RawMessage(q.topic, q.payload, 0, q.id), 0, self._generation, now)
            for q in claimed
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
            self.pipeline.tick(self._conn)
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
        while True:
            if self._stop.is_set() and self._queue.empty():
                return
            self._between_batches()
            batch = self._collect()
            batch += self._replays(self.opts.batch_max - len(batch))
            if not batch:
                continue
            self._batch_since = batch[0].received_at
            result = self._commit(batch)
            if result is None:
                return
            generation = self._generation
            for r in batch:
                # Only ack on the connection that delivered it; otherwise it comes again.
                if r.qos > 0 and r.generation == generation:
                    self.client.ack(r.msg.mid, r.qos)
            self.committed_messages += len(batch)
            self._batch_since = None
            if self.on_batch is not None:
                self.on_batch(result)

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

    def _commit(self, batch: list[_Received]) -> BatchResult | None:
        """Write a batch, retrying transient failures; bisect one the database refuses."""
        messages = [r.msg for r in batch]
        try:
            try:
                return self._write(messages)
            except _Stopping:
                raise
            except Exception as exc:
                log.error(
                    "database refused a batch; isolating the messages it refuses",
                    messages=len(messages),
                    error=_error_text(exc),
                )
                return self._isolate(messages, exc)
        except _Stopping:
            log.warning(
                "stopping with an uncommitted batch; the broker will redeliver it",
                messages=len(batch),
            )
            return None

    def _write(self, messages: list[RawMessage]) -> BatchResult:
        """Prepare and write in one transaction; wait out transient failures, raise the rest."""
        outage = _Outage("database write failed; retrying batch")
        prepared = None
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect_db_retrying()
                if prepared is None:
                    prepared = self.pipeline.prepare(self._conn, messages)
                result = self.pipeline.write(self._conn, prepared)
                outage.over()
                return result
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    if prepared is not None:
                        self.pipeline.discard(prepared)
                    raise _Stopping from exc
                # Lost connection, serialization failure, deadlock, full disk: nothing is acked,
                # so nothing is lost. The same prepared batch is written again (same rule state).
                if self._conn is not None and self._conn.closed is False:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.rollback()
                if self._conn is not None and self._conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.close()
                self._stop.wait(outage.failed(exc, self.opts.retry_max_s, messages=len(messages)))
            except BaseException:
                if prepared is not None:
                    self.pipeline.discard(prepared)
                if self._conn is not None and not self._conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.rollback()
                raise

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
