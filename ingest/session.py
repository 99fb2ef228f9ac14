"""One MQTT 5 session of ingest: connect, subscribe, receive QoS 1, ack what was committed.

Ingest holds two (see ingest/consumer.py): telemetry in one, events and status in another, so
that a fire alarm never waits behind a telemetry backlog in the broker (火警优先). Each is a
persistent session (clean start off, a session expiry) with its own client id, reconnects with
a short backoff and subscribes again on every connect. Messages are handed on with the
session's generation, which changes on every connect and disconnect: an ack is sent only on
the connection that delivered the message, as a message of an earlier one is redelivered.

The client is our own, on one thread per session, around the `mqtt5` codec (sans-I/O, in
Rust): paho spent ~20 µs of Python per message on its network thread (its per-packet reads and
property parsing), which bounded ingest at ~17k msgs/s on two cores. Here the socket is read
in chunks of up to 256 KiB, every whole packet of a chunk is parsed in one loop and handed on
as one list, a short read is followed by a 2 ms nap so that the next read brings many packets
(Mosquitto writes one packet per write), and a batch's PUBACKs go out in one write.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mqtt5
import structlog

log = structlog.get_logger("ingest")

_CHUNK = 256 * 1024
# After a read shorter than this, wait a little so that the next read brings a batch.
_SHORT_READ = 64 * 1024
_NAP_S = 0.002
_PUBACK = struct.Struct("!BBH")
# The reader wakes at least this often: to ping, to see a dead broker, to stop.
_TICK_S = 0.5


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
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 2.0


# (topic, payload, packet id, qos) of each message of one read, the session, its generation.
Deliver = Callable[[list[tuple[str, bytes, int, int]], "Session", int], None]


class _Dropped(Exception):
    """The connection must be given up (broker gone, silent, or sending garbage)."""


def _is_panic(exc: BaseException) -> bool:
    # mqtt5 0.8 raises pyo3's PanicException (a BaseException) on a string that is not UTF-8.
    return type(exc).__name__ == "PanicException"


class Session:
    """One persistent MQTT 5 session on a thread of its own."""

    def __init__(self, opts: SessionOptions, deliver: Deliver) -> None:
        self.opts = opts
        self.deliver = deliver
        self.generation = 0
        self.accepting = True
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._write = threading.Lock()  # acks (batch thread) and pings (reader) share the socket
        self._sock: socket.socket | None = None
        self._sent_at = 0.0
        self._thread: threading.Thread | None = None
        self._packet_id = 0
        self._sub_id = 0  # the SUBSCRIBE whose SUBACK makes the session ready
        self._pending = b""  # bytes read with the CONNACK that belong to later packets
        self._stop_at = 0.0

    def _share(self, topic: str) -> str:
        return f"$share/{self.opts.shared_group}/{topic}" if self.opts.shared_group else topic

    def _next_id(self) -> int:
        self._packet_id = self._packet_id % 65535 + 1
        return self._packet_id

    # --- lifecycle ---

    def start(self) -> None:
        """Connect (in the background, retrying) on the session's own thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-{self.opts.name}", daemon=True
        )
        self._thread.start()

    def connected(self) -> bool:
        """Whether the connection is up and subscribed."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the connection is up and the subscriptions are acknowledged."""
        return self._connected.wait(timeout)

    def ack(self, mids: Sequence[int], generation: int) -> int:
        """Ack committed messages of this generation's connection, in one write; return how
        many were acked (0 when that connection is gone: the broker sends them again)."""
        data = b"".join(_PUBACK.pack(0x40, 2, m) for m in mids)
        with self._write:
            if generation != self.generation or self._sock is None or not mids:
                return 0
            try:
                self._sock.sendall(data)
            except OSError:
                return 0  # the reader sees the connection die and reconnects
            self._sent_at = time.monotonic()
        return len(mids)

    def stop(self, timeout: float = 10.0) -> None:
        """Say DISCONNECT and close so that the broker has read every ack first."""
        self._stop_at = time.monotonic()
        self._stopping.set()
        with self._write:
            sock = self._sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.sendall(mqtt5.DisconnectPacket().write())
                    # Half-close and let the reader drain to EOF: closing with unread bytes
                    # sends RST, and the broker drops the PUBACKs it had not read yet.
                    sock.shutdown(socket.SHUT_WR)
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the session's thread ---

    def _run(self) -> None:
        delay = self.opts.reconnect_min_s
        while not self._stopping.is_set():
            try:
                sock = self._open()
            except (OSError, _Dropped) as exc:
                log.warning(
                    "cannot reach the broker; retrying",
                    session=self.opts.name,
                    host=self.opts.host,
                    port=self.opts.port,
                    error=str(exc)[:200],
                    retry_in_s=delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, self.opts.reconnect_max_s)
                continue
            delay = self.opts.reconnect_min_s
            try:
                self._read(sock)
            except (OSError, _Dropped) as exc:
                if not self._stopping.is_set():
                    log.warning(
                        "disconnected from broker; reconnecting",
                        session=self.opts.name,
                        reason=str(exc)[:200],
                    )
            except Exception:
                # A bug here must not leave ingest deaf: unacked messages come again.
                log.exception(
                    "mqtt session failed unexpectedly; reconnecting", session=self.opts.name
                )
            finally:
                self._close(sock)
            if not self._stopping.is_set():
                self._stopping.wait(self.opts.reconnect_min_s)

    def _open(self) -> socket.socket:
        """TCP (and TLS), CONNECT, CONNACK, then UNSUBSCRIBE and SUBSCRIBE."""
        o = self.opts
        raw = socket.create_connection((o.host, o.port), timeout=o.connect_timeout_s)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock: socket.socket = raw
            if o.tls_context is not None:
                sock = o.tls_context.wrap_socket(
                    raw, server_hostname=o.host if o.tls_check_hostname else None
                )
            sock.sendall(
                mqtt5.ConnectPacket(
                    o.client_id,
                    username=o.username or None,
                    password=o.password.encode() if o.username and o.password else None,
                    clean_start=False,
                    keep_alive=o.keepalive_s,
                    session_expiry_interval=o.session_expiry_s,
                    receive_max=o.receive_maximum,
                ).write()
            )
            connack, rest = self._first_packet(sock)
            if not isinstance(connack, mqtt5.ConnAckPacket):
                raise _Dropped(f"expected CONNACK, got {type(connack).__name__}")
            if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
                log.error(
                    "broker refused connection",
                    session=o.name,
                    client_id=o.client_id,
                    reason=connack.reason_code.name,
                    fix="check mqtt.username and the password; `firesentry broker sync` makes "
                    "the accounts of both ingest sessions",
                )
                raise _Dropped(f"CONNACK {connack.reason_code.name}")
        except BaseException:
            raw.close()
            raise
        with self._write:
            self._sock = sock
            self.generation += 1
            self._sent_at = time.monotonic()
        log.info(
            "connected to broker",
            session=o.name,
            session_present=connack.session_present,
            host=o.host,
            port=o.port,
        )
        out = b""
        if o.not_topics:
            out += mqtt5.UnsubscribePacket(
                self._next_id(), [self._share(t) for t in o.not_topics]
            ).write()
        filters = [
            mqtt5.TopicFilter(self._share(t), max_qos=mqtt5.QoS.AT_LEAST_ONCE) for t in o.topics
        ]
        self._sub_id = self._next_id()
        out += mqtt5.SubscribePacket(self._sub_id, filters).write()
        self._send(out)
        self._pending = rest
        return sock

    def _first_packet(self, sock: socket.socket) -> tuple[mqtt5.Packet, bytes]:
        """Read until one whole packet (the CONNACK) is in; return it and the bytes after it."""
        buf = b""
        deadline = time.monotonic() + self.opts.connect_timeout_s
        while True:
            try:
                packet, used = mqtt5.read(memoryview(buf))
                return packet, buf[used:]
            except IndexError:
                pass
            except Exception as exc:
                raise _Dropped(f"malformed packet from the broker: {exc}") from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Dropped("no CONNACK in time")
            sock.settimeout(left)
            chunk = sock.recv(_CHUNK)
            if not chunk:
                raise _Dropped("the broker closed the connection")
            buf += chunk

    def _send(self, data: bytes) -> None:
        with self._write:
            if self._sock is None:
                raise _Dropped("no connection")
            self._sock.sendall(data)
            self._sent_at = time.monotonic()

    def _read(self, sock: socket.socket) -> None:
        """Receive until the connection ends; keep it alive with PINGREQs."""
        keepalive = float(self.opts.keepalive_s)
        tick = min(_TICK_S, keepalive / 2) if keepalive else _TICK_S
        sock.settimeout(tick)
        buf = self._pending
        heard_at = time.monotonic()
        while True:
            if buf:
                buf = self._packets(buf)
            try:
                chunk = sock.recv(_CHUNK)
                # A TLS socket returns one record (16 KiB) per call: take what is decrypted.
                while isinstance(sock, ssl.SSLSocket) and sock.pending():
                    chunk += sock.recv(sock.pending())
            except TimeoutError:
                chunk = None
            now = time.monotonic()
            if chunk is None:
                if self._stopping.is_set() and now - self._stop_at > 2.0:
                    return  # the broker does not close after our DISCONNECT: close anyway
                if keepalive and now - heard_at > keepalive * 1.5:
                    raise _Dropped(f"nothing from the broker for {now - heard_at:.0f} s")
                if keepalive and now - self._sent_at >= keepalive / 2:
                    self._send(mqtt5.PingReqPacket().write())
                continue
            if not chunk:
                if self._stopping.is_set():
                    return  # our DISCONNECT was read; the broker closed
                raise _Dropped("the broker closed the connection")
            heard_at = now
            buf = buf + chunk if buf else chunk
            if len(chunk) < _SHORT_READ and not self._stopping.is_set():
                # Parse what came, then let more accumulate before the next read.
                buf = self._packets(buf)
                time.sleep(_NAP_S)

    def _packets(self, buf: bytes) -> bytes:
        """Handle every whole packet in buf; return the incomplete tail."""
        mv = memoryview(buf)
        pos, end = 0, len(buf)
        got: list[tuple[str, bytes, int, int]] = []
        publish = mqtt5.PublishPacket
        read = mqtt5.read
        try:
            while pos < end:
                try:
                    packet, used = read(mv[pos:])
                except IndexError:
                    break  # the rest of this packet is still on its way
                except Exception as exc:
                    raise _Dropped(f"malformed packet from the broker: {exc}") from None
                except BaseException as exc:
                    if _is_panic(exc):
                        raise _Dropped(f"malformed packet from the broker: {exc}") from None
                    raise
                pos += used
                if type(packet) is publish:
                    got.append(
                        (packet.topic, packet.payload, packet.packet_id or 0, int(packet.qos))
                    )
                else:
                    self._control(packet)
        finally:
            mv.release()
        if got and self.accepting:
            self.deliver(got, self, self.generation)
        return buf[pos:]

    def _control(self, packet: mqtt5.Packet) -> None:
        """Everything but PUBLISH: SUBACK makes the session ready; DISCONNECT ends it."""
        if isinstance(packet, mqtt5.SubAckPacket):
            for rc in packet.reason_codes:
                if int(rc) >= 0x80:  # a refusal (mqtt5's codes are not IntEnums at run time)
                    log.warning("subscription refused", session=self.opts.name, reason=rc.name)
            if packet.packet_id == self._sub_id:
                log.info("subscribed", session=self.opts.name, topics=list(self.opts.topics))
                self._connected.set()
        elif isinstance(packet, mqtt5.DisconnectPacket):
            raise _Dropped(f"the broker disconnected us: {packet.reason_code.name}")
        # PINGRESP, UNSUBACK: nothing to do.

    def _close(self, sock: socket.socket) -> None:
        self._connected.clear()
        with self._write:
            self._sock = None
            # Acks for messages of that connection are void; the broker will redeliver them.
            self.generation += 1
        with contextlib.suppress(OSError):
            sock.close()
