"""The MQTT consumer: QoS 1, persistent MQTT 5 session, acks sent only after the batch commits."""

from __future__ import annotations

import contextlib
import queue
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
    retry_max_s: float = 30.0


@dataclass(frozen=True, slots=True)
class _Received:
    msg: RawMessage
    qos: int
    generation: int


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
        self.committed_messages = 0
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=opts.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if opts.username:
            client.username_pw_set(opts.username, opts.password)
        client.reconnect_delay_set(1, 30)
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
        self._thread = threading.Thread(target=self._run, name="ingest-batcher", daemon=True)
        self._thread.start()

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

    def _run(self) -> None:
        while True:
            if self._stop.is_set() and self._queue.empty():
                return
            self._between_batches()
            batch = self._collect()
            if not batch:
                continue
            result = self._commit(batch)
            if result is None:
                return
            generation = self._generation
            for r in batch:
                # Only ack on the connection that delivered it; otherwise it comes again.
                if r.qos > 0 and r.generation == generation:
                    self.client.ack(r.msg.mid, r.qos)
            self.committed_messages += len(batch)
            if self.on_batch is not None:
                self.on_batch(result)

    def _connect_db_retrying(self) -> psycopg.Connection[Any]:
        delay = 0.5
        while True:
            try:
                return self.connect_db()
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    raise
                log.warning(
                    "database unavailable; retrying", error=str(exc).strip()[:200], retry_in_s=delay
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.opts.retry_max_s)

    def _commit(self, batch: list[_Received]) -> BatchResult | None:
        assert self._conn is not None
        delay = 0.5
        prepared = None
        while True:
            try:
                if self._conn.closed:
                    self._conn = self._connect_db_retrying()
                if prepared is None:
                    prepared = self.pipeline.prepare(self._conn, [r.msg for r in batch])
                return self.pipeline.write(self._conn, prepared)
            except psycopg.OperationalError as exc:
                # Nothing is acked, so nothing is lost: wait for the database and write again.
                log.warning(
                    "database write failed; retrying batch",
                    error=str(exc).strip()[:200],
                    messages=len(batch),
                    retry_in_s=delay,
                )
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()
            except Exception:
                # A bug or a constraint we did not foresee: keep the batch (unacked), re-read the
                # registry and try again rather than dropping data or dying silently.
                log.exception("batch failed; retrying", messages=len(batch), retry_in_s=delay)
                prepared = None
                with contextlib.suppress(psycopg.Error):
                    self._conn.rollback()
                    self.pipeline.refresh_registry(self._conn)
            if self._stop.is_set():
                log.warning(
                    "stopping with an uncommitted batch; the broker will redeliver it",
                    messages=len(batch),
                )
                return None
            self._stop.wait(delay)
            delay = min(delay * 2, self.opts.retry_max_s)
