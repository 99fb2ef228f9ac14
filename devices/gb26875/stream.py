"""Frames out of a TCP byte stream, resynchronising on the next start marker after anything
that is not a frame (sans-I/O: the gateway feeds what it read, takes what came out).

A frame is found by its start marker and delimited by its length (there is no escaping, so
"@@" can occur inside a frame and "##" inside its data). A candidate whose length, end marker
or checksum is wrong is reported with its bytes and the reason, and the search goes on from
the byte after its start marker, so a real frame hidden behind a false start is still found.
A candidate still short of its length is waited for, unless a whole valid frame already
begins inside it: then it was cut short (a UTD that lost power mid-frame and sent again) and
waiting would hold the fire alarm behind it. Bytes that are no frame are reported once, in
one piece per run, with the reason of the first false start among them (or as garbage).
Memory is bounded: at most one longest frame is held.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from devices.gb26875.frame import (
    END,
    HEADER_LEN,
    MAX_DATA,
    OVERHEAD,
    START,
    Frame,
    FrameError,
    data_length,
    decode,
)

MAX_FRAME = OVERHEAD + MAX_DATA


@dataclass(frozen=True, slots=True)
class BadBytes:
    """Bytes that are not a frame, and why (for the dead letters: raw as hex, reason)."""

    raw: bytes
    reason: str


class FrameReader:
    """Feed it the bytes of one connection; it yields frames and bad bytes in order."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def _whole_frame_at(self, p: int) -> int:
        """The size of a complete, valid frame at `p` in the buffer, or 0."""
        buf = self._buf
        if len(buf) - p < HEADER_LEN - 1:
            return 0
        n = data_length(memoryview(buf)[p:])
        size = OVERHEAD + n
        if n > MAX_DATA or len(buf) - p < size or buf[p + size - 2 : p + size] != END:
            return 0
        try:
            decode(bytes(buf[p : p + size]))
        except FrameError:
            return 0
        return size

    def _later_frame(self, start: int) -> int:
        """Where a complete, valid frame begins after `start`, or -1."""
        p = self._buf.find(START, start + 1)
        while p >= 0:
            if self._whole_frame_at(p):
                return p
            p = self._buf.find(START, p + 1)
        return -1

    def feed(self, data: bytes) -> Iterator[Frame | BadBytes]:
        """What `data`, after what came before, completes."""
        self._buf += data
        buf = self._buf
        # Bytes before `done` are given out (in frames or reports); those in [done, scan) are
        # known not to be a frame and wait to be reported in one piece, with `reason`.
        done = scan = 0
        reason: str | None = None

        def bad(upto: int) -> BadBytes | None:
            if upto <= done:
                return None
            return BadBytes(bytes(buf[done:upto]), reason or "garbage between frames")

        try:
            while True:
                start = buf.find(START, scan)
                if start < 0:
                    # Keep a last "@" that may begin the next start marker.
                    end = len(buf) - (1 if buf[-1:] == START[:1] else 0)
                    report = bad(max(end, done))
                    if report is not None:
                        yield report
                    done = scan = max(end, done)
                    return
                if len(buf) - start < HEADER_LEN - 1:
                    report = bad(start)
                    if report is not None:
                        yield report
                    done = scan = start
                    return
                n = data_length(memoryview(buf)[start:])
                size = OVERHEAD + n
                why: str | None = None
                if n > MAX_DATA:
                    why = f"application data length {n}: at most {MAX_DATA}"
                elif len(buf) - start < size:
                    # Waiting for the rest, unless a whole frame already began inside what
                    # this one claims: then this one was cut short (a UTD that lost power
                    # mid-frame and sent again), and waiting would stall the session.
                    later = self._later_frame(start)
                    if later < 0:
                        report = bad(start)
                        if report is not None:
                            yield report
                        done = scan = start
                        return
                    reason = reason or f"truncated: a whole frame began {later - start} bytes in"
                    scan = later
                    continue
                elif buf[start + size - 2 : start + size] != END:
                    why = f"no end marker where length {n} puts it"
                else:
                    try:
                        frame = decode(bytes(buf[start : start + size]))
                    except FrameError as exc:
                        why = str(exc)
                    else:
                        report = bad(start)
                        if report is not None:
                            yield report
                        reason = None
                        done = scan = start + size
                        yield frame
                        continue
                # A false start: look again from its next byte.
                reason = reason or why
                scan = start + 1
        finally:
            del buf[:done]

    def close(self) -> BadBytes | None:
        """What was left when the connection ended: a truncated frame, if any."""
        if not self._buf:
            return None
        left = BadBytes(
            bytes(self._buf),
            f"truncated: the connection ended {len(self._buf)} bytes into a frame",
        )
        self._buf.clear()
        return left
