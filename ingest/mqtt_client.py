"""paho's MQTT client with buffered socket reads, so that a busy subscription costs fewer syscalls.

paho reads each packet in several small recv() calls and goes back to select() after every
packet. Draining a queued session of small messages that way spends most of its time in the
kernel. This client reads up to 64 KiB at a time and parses every whole packet in the buffer
before it waits again. It relies on two private methods of paho 2.x (pinned below 3).
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_CHUNK = 65536


class BufferedClient(mqtt.Client):
    """A paho Client whose reads come from a 64 KiB buffer refilled by one recv() at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._rbuf = bytearray()
        super().__init__(*args, **kwargs)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._rbuf:
            data = super()._sock_recv(_CHUNK)
            if not data:
                return b""  # the peer closed the connection
            self._rbuf += data
        out = bytes(self._rbuf[:bufsize])
        del self._rbuf[:bufsize]
        return out

    def _sock_close(self) -> None:
        self._rbuf.clear()  # bytes of a dead connection must not be parsed on the next one
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read packets until the buffer holds no more (select() would not see them)."""
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rbuf and self._sock is not None:
            rc = super().loop_read(1)
        return rc
