"""ingest's MQTT session against a scripted peer on loopback, for what Mosquitto never does on
purpose: packets cut at every byte, and garbage. (Everything else is tested against the real
Mosquitto in tests/e2e and tests/faults.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import mqtt5
import pytest

from ingest.session import Session, SessionOptions

Got = list[tuple[str, bytes, int, int]]


class ScriptedBroker:
    """Accepts connections; answers CONNECT and SUBSCRIBE; then runs `script(conn)`."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.script = script
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _packet(self, conn: socket.socket, buf: bytearray) -> mqtt5.Packet:
        while True:
            try:
                packet, used = mqtt5.read(memoryview(bytes(buf)))
                del buf[:used]
                return packet
            except IndexError:
                chunk = conn.recv(65536)
                if not chunk:
                    raise ConnectionError("client closed") from None
                buf += chunk

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            try:
                with conn:
                    buf = bytearray()
                    assert isinstance(self._packet(conn, buf), mqtt5.ConnectPacket)
                    conn.sendall(mqtt5.ConnAckPacket().write())
                    while True:
                        p = self._packet(conn, buf)
                        if isinstance(p, mqtt5.SubscribePacket):
                            codes = [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE]
                            conn.sendall(mqtt5.SubAckPacket(p.packet_id, codes).write())
                            break
                    self.script(conn)
                    conn.settimeout(2)
                    while chunk := conn.recv(65536):
                        self.received += chunk
            except (OSError, ConnectionError, AssertionError):
                pass

    def close(self) -> None:
        """Stop accepting."""
        self._stop = True
        self._thread.join(5)
        self.server.close()


def _publish(mid: int, topic: str = "fs/v1/em-1/telemetry") -> bytes:
    body = b'{"ts": 1, "metrics": {"residual_current_ma": %d}}' % mid
    return mqtt5.PublishPacket(topic, body, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=mid).write()


@pytest.fixture()
def got() -> Got:
    """What the session handed on."""
    return []


@contextmanager
def _session(port: int, got: Got) -> Iterator[Session]:
    """A session to the scripted broker, stopped afterwards."""
    s = Session(
        SessionOptions("telemetry", "127.0.0.1", port, "ingest", ["fs/v1/+/telemetry"]),
        lambda items, session, generation: got.extend(items),
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_packets_cut_at_every_byte_arrive_whole_and_are_acked(got: Got) -> None:
    """Three PUBLISHes sent a byte at a time: each arrives whole, in order, and the acks go
    back in one write on the connection that delivered them."""

    def script(conn: socket.socket) -> None:
        for byte in b"".join(_publish(m) for m in (1, 2, 3)):
            conn.sendall(bytes([byte]))

    broker = ScriptedBroker(script)
    try:
        with _session(broker.port, got) as session:
            _wait(lambda: len(got) == 3, "three messages")
            assert [(t, m, q) for t, _, m, q in got] == [
                ("fs/v1/em-1/telemetry", m, 1) for m in (1, 2, 3)
            ]
            assert got[1][1] == b'{"ts": 1, "metrics": {"residual_current_ma": 2}}'
            assert session.ack([1, 2, 3], session.generation) == 3
            _wait(lambda: broker.received.count(b"\x40\x02") >= 3, "three PUBACKs")
            assert session.ack([1], session.generation - 1) == 0, "not on another connection"
    finally:
        broker.close()


# mqtt5 0.8's panic on a non-UTF-8 string leaves Python's error indicator set behind it, which
# Python reports as "Exception ignored"; the session itself handles the panic (the test checks).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_garbage_from_the_broker_drops_the_connection_and_it_reconnects(got: Got) -> None:
    """A packet that is not MQTT (or a topic that is not UTF-8, which mqtt5 0.8 answers with a
    panic): the session says so, connects again and goes on receiving."""
    sent = {"n": 0}

    def script(conn: socket.socket) -> None:
        sent["n"] += 1
        if sent["n"] == 1:
            conn.sendall(_publish(1) + b"\x00\x03abc")  # packet type 0 does not exist
        elif sent["n"] == 2:
            bad = bytearray(_publish(2))
            bad[4] = 0xFF  # inside the topic: not UTF-8
            conn.sendall(bytes(bad))
        else:
            conn.sendall(_publish(3))

    broker = ScriptedBroker(script)
    try:
        with _session(broker.port, got):
            _wait(lambda: any(m == 3 for _, _, m, _ in got), "the message after two reconnects")
            assert broker.connections >= 3
            assert [m for _, _, m, _ in got].count(2) == 0, "the broken packet is not handed on"
    finally:
        broker.close()
