"""One MQTT 5 session of ingest: connect, subscribe, receive QoS 1, ack what was committed.

Ingest holds two (see ingest/consumer.py): telemetry in one, events and status in another, so
that a fire alarm never waits behind a telemetry backlog in the broker (火警优先). Each is a
persistent session (clean start off, a session expiry) with its own client id, reconnects with
a short backoff and subscribes again on every connect. A message is handed on with the
session's generation, which changes on every connect and disconnect: an ack is sent only on
the connection that delivered the message, as a message of an earlier one is redelivered.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.mqtt_client import BufferedClient

log = structlog.get_logger("ingest")


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Where and as whom one session connects, and what it subscribes to."""

    name: str  # "telemetry" or "events", for logs
    host: str
    port: int
    client_id: str
    topics: Sequence[str]  # without a $share/ prefix
    # Topics an earlier version subscribed this session to: unsubscribed at every connect, so
    # an upgraded persistent session stops receiving what the other session now takes.
    not_topics: Sequence[str] = ()
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400
    receive_maximum: int = 65535
    shared_group: str | None = None
    tls_context: ssl.SSLContext | None = None
    tls_check_hostname: bool = True


# (topic, payload, packet id, qos, session, generation) of one received message.
Deliver = Callable[[str, bytes, int, int, "Session", int], None]


class Session:
    """A paho client (buffered reads) for one persistent MQTT 5 session."""

    def __init__(self, opts: SessionOptions, deliver: Deliver) -> None:
        self.opts = opts
        self.deliver = deliver
        self.generation = 0
        self.accepting = True
        self._connected = threading.Event()
        self._stopping = False
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=opts.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if opts.username:
            client.username_pw_set(opts.username, opts.password)
        if opts.tls_context is not None:
            client.tls_set_context(opts.tls_context)
            # The certificate must name opts.host unless explicitly turned off.
            client.tls_insecure_set(not opts.tls_check_hostname)
        # Reconnect soon after the broker is back: a long backoff only delays alarms.
        client.reconnect_delay_set(1, 2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def _share(self, topic: str) -> str:
        return f"$share/{self.opts.shared_group}/{topic}" if self.opts.shared_group else topic

    # --- paho callbacks (network thread) ---

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error(
                "broker refused connection",
                session=self.opts.name,
                client_id=self.opts.client_id,
                reason=str(reason),
                fix="check mqtt.username and the password; `firesentry broker sync` makes the "
                "accounts of both ingest sessions",
            )
            return
        self.generation += 1
        log.info(
            "connected to broker",
            session=self.opts.name,
            session_present=flags.session_present,
            host=self.opts.host,
            port=self.opts.port,
        )
        if self.opts.not_topics:
            client.unsubscribe([self._share(t) for t in self.opts.not_topics])
        # Subscribe every time: harmless with a session present, needed without one.
        client.subscribe([(self._share(t), SubscribeOptions(qos=1)) for t in self.opts.topics])

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
                log.warning("subscription refused", session=self.opts.name, reason=str(rc))
        log.info("subscribed", session=self.opts.name, topics=list(self.opts.topics))
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
        self.generation += 1
        if not self._stopping:
            log.warning(
                "disconnected from broker; reconnecting", session=self.opts.name, reason=str(reason)
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not self.accepting:
            return  # not acked: redelivered to the next session
        self.deliver(
            message.topic, bytes(message.payload), message.mid, message.qos, self, self.generation
        )

    # --- lifecycle ---

    def start(self) -> None:
        """Connect (in the background, retrying) and start the network thread."""
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

    def connected(self) -> bool:
        """Whether the connection is up and subscribed."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the connection is up and the subscriptions are acknowledged."""
        return self._connected.wait(timeout)

    def ack(self, mids: Sequence[int], generation: int) -> int:
        """Ack committed messages of this generation's connection; return how many were acked."""
        if generation != self.generation:
            return 0  # another connection now: the broker will send them again
        for mid in mids:
            self.client.ack(mid, 1)
        return len(mids)

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
