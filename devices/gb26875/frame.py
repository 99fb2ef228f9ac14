"""GB/T 26875.3-2011 frames: the control unit around an application data unit.

Layout (standard §6.6, table 1; offsets from 0):

    0  2  start marker "@@" (0x40 0x40)
    2  2  business serial number, low byte first
    4  1  protocol version, major (the standard: 1)
    5  1  protocol version, user's
    6  6  time label: second, minute, hour, day, month, year (0-99), binary
   12  6  source address, low byte first
   18  6  destination address, low byte first
   24  2  length L of the application data unit, low byte first, at most 1024
   26  1  command byte
   27  L  application data unit
 27+L  1  checksum: the sum of bytes 2 .. 26+L, modulo 256
 28+L  2  end marker "##" (0x23 0x23)

There is no escaping: "@@" and "##" may occur inside a frame, which is delimited by its
length. Pure functions, no I/O.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from enum import IntEnum

START = b"@@"
END = b"##"
HEADER_LEN = 27  # the start marker and the control unit, up to and with the command byte
OVERHEAD = HEADER_LEN + 3  # with the checksum and the end marker: the shortest frame
MAX_DATA = 1024
_HEAD = struct.Struct("<2sHBB6s6s6sHB")


class Command(IntEnum):
    """The command byte (table 2); 128-255 are the user's own."""

    CONTROL = 1  # 控制命令 (time sync, initialise, duty check)
    SEND = 2  # 发送数据
    CONFIRM = 3  # 确认
    REQUEST = 4  # 请求
    REPLY = 5  # 应答
    DENY = 6  # 否认


@dataclass(frozen=True, slots=True)
class TimeLabel:
    """Six bytes of local time as the device's clock has it (it may be unset or wrong)."""

    second: int
    minute: int
    hour: int
    day: int
    month: int
    year: int  # 0-99: 2000 + year

    def encode(self) -> bytes:
        """The six bytes, second first."""
        return bytes((self.second, self.minute, self.hour, self.day, self.month, self.year))

    @classmethod
    def decode(cls, b: bytes) -> TimeLabel:
        """From six bytes, second first (any values: a device's clock may say anything)."""
        return cls(b[0], b[1], b[2], b[3], b[4], b[5])

    @classmethod
    def of(cls, t: dt.datetime) -> TimeLabel:
        """The label of a local time (years 2000-2099)."""
        return cls(t.second, t.minute, t.hour, t.day, t.month, t.year - 2000)

    def to_datetime(self, tz: dt.tzinfo) -> dt.datetime | None:
        """The time in `tz`, or None when the label is no date (an unset clock)."""
        try:
            return dt.datetime(
                2000 + self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
                tzinfo=tz,
            )
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: its control unit and its application data unit, still as bytes."""

    serial: int
    command: int
    data: bytes
    time: TimeLabel
    source: bytes  # 6 bytes as sent (low byte first)
    destination: bytes
    version: tuple[int, int] = (1, 1)

    def reply(self, command: int, time: TimeLabel, data: bytes = b"") -> Frame:
        """The answer to this frame: its serial number, the addresses swapped (§6.2)."""
        return Frame(self.serial, command, data, time, self.destination, self.source, self.version)


class FrameError(ValueError):
    """Bytes that are not a frame; the message says why (it goes to the dead letters)."""


def checksum(body: bytes | memoryview) -> int:
    """The sum of the bytes, modulo 256."""
    return sum(body) & 0xFF


def address(n: int) -> bytes:
    """An address as six bytes, low byte first."""
    return n.to_bytes(6, "little")


def address_int(b: bytes) -> int:
    """The number six address bytes (low byte first) stand for."""
    return int.from_bytes(b, "little")


def encode(f: Frame) -> bytes:
    """The frame's bytes."""
    if len(f.data) > MAX_DATA:
        raise FrameError(f"application data of {len(f.data)} bytes: at most {MAX_DATA}")
    if len(f.source) != 6 or len(f.destination) != 6:
        raise FrameError("an address is six bytes")
    head = _HEAD.pack(
        START,
        f.serial,
        f.version[0],
        f.version[1],
        f.time.encode(),
        f.source,
        f.destination,
        len(f.data),
        f.command,
    )
    body = head[2:] + f.data
    return head[:2] + body + bytes((checksum(body),)) + END


def data_length(head: bytes | memoryview) -> int:
    """L, read from the first 26 bytes of a frame."""
    return int(head[24]) | (int(head[25]) << 8)


def decode(raw: bytes) -> Frame:
    """A frame from exactly its bytes; FrameError naming what is wrong."""
    if len(raw) < OVERHEAD:
        raise FrameError(f"truncated: {len(raw)} bytes, a frame has at least {OVERHEAD}")
    if raw[:2] != START:
        raise FrameError(f"no start marker: {raw[:2].hex()}")
    n = data_length(raw)
    if n > MAX_DATA:
        raise FrameError(f"application data length {n}: at most {MAX_DATA}")
    if len(raw) != OVERHEAD + n:
        raise FrameError(f"length {n} says {OVERHEAD + n} bytes, the frame has {len(raw)}")
    if raw[-2:] != END:
        raise FrameError(f"no end marker: {raw[-2:].hex()}")
    want = checksum(memoryview(raw)[2 : HEADER_LEN + n])
    if raw[HEADER_LEN + n] != want:
        raise FrameError(f"checksum {raw[HEADER_LEN + n]:#04x}, the bytes sum to {want:#04x}")
    _, serial, major, minor, time, src, dst, _, command = _HEAD.unpack_from(raw)
    return Frame(
        serial,
        command,
        bytes(raw[HEADER_LEN : HEADER_LEN + n]),
        TimeLabel.decode(time),
        src,
        dst,
        (major, minor),
    )
