"""A lean MQTT 5 QoS 1 publisher for load generation: packets built as bytes, sent in bursts.

paho spends ~80 µs of Python per QoS 1 publish; on a 2-core machine a paho load generator at
12k msgs/s takes a core from the engine it is measuring. This one writes ready-made PUBLISH
packets with one sendall per burst and counts PUBACKs on a thread, so what is timed is the
engine. Only what the benchmark needs: clean start, no properties, no TLS, no auth.
"""

from __future__ import annotations

import socket
import struct
import threading
import time


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


class RawPublisher:
    """One MQTT 5 connection that publishes QoS 1 and keeps at most `window` unacknowledged."""

    def __init__(self, host: str, port: int, client_id: str, window: int = 60_000) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Keep alive 0 (off): between bursts the bench may wait minutes for the engine to drain,
        # and a publisher that is silent for 1.5 × its keep alive is disconnected by the broker.
        body = _utf8("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 0) + b"\x00"
        body += _utf8(client_id)
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        head = self.sock.recv(2)
        if not head or head[0] != 0x20:
            raise ConnectionError(f"no CONNACK from {host}:{port}: {head!r}")
        rest = self.sock.recv(head[1])
        if len(rest) < 2 or rest[1] != 0:
            raise ConnectionError(f"connection refused, reason code {rest[1:2].hex()}")
        self.sock.settimeout(None)
        self.window = window
        self.sent = 0
        self.acked = 0
        self._mid = 0
        self._last_send = time.monotonic()
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="rawpub-acks", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while not self._closed:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            acks, i = 0, 0
            while True:  # fixed header, remaining length (one or two bytes here), body
                if len(buf) - i < 2:
                    break
                n, used, shift = 0, 1, 0
                while True:
                    if i + used >= len(buf):
                        n = -1
                        break
                    b = buf[i + used]
                    n |= (b & 0x7F) << shift
                    used += 1
                    shift += 7
                    if not b & 0x80:
                        break
                if n < 0 or len(buf) - i < used + n:
                    break
                if buf[i] >> 4 == 4:
                    acks += 1
                i += used + n
            buf = buf[i:]
            if acks:
                with self._cond:
                    self.acked += acks
                    self._cond.notify_all()

    def packet(self, topic: str, payload: bytes) -> bytes:
        """A QoS 1 PUBLISH with the next packet id."""
        self._mid = self._mid % 65535 + 1
        var = _utf8(topic) + struct.pack("!H", self._mid) + b"\x00"
        return b"\x32" + _varint(len(var) + len(payload)) + var + payload

    def send(self, packets: list[bytes]) -> None:
        """Write packets in one go, first waiting while too many are unacknowledged; raise
        ConnectionError once the broker has closed the connection (no acks will come)."""
        with self._cond:
            while self.sent + len(packets) - self.acked > self.window:
                if not self._reader.is_alive():
                    raise ConnectionError(
                        f"the broker closed the publisher's connection after {self.acked:,} acks"
                    )
                self._cond.wait(1.0)
        try:
            self.sock.sendall(b"".join(packets))
        except OSError as exc:
            raise ConnectionError(
                f"the broker closed the publisher's connection after {self.acked:,} acks of "
                f"{self.sent:,} sent, {time.monotonic() - self._last_send:.1f} s after the last "
                f"send ({exc})"
            ) from exc
        self.sent += len(packets)
        self._last_send = time.monotonic()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every packet sent is acknowledged."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.acked < self.sent and time.monotonic() < deadline:
                self._cond.wait(0.1)
            return self.acked >= self.sent

    def close(self) -> None:
        """DISCONNECT and close."""
        self._closed = True
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.close()
        except OSError:
            pass
