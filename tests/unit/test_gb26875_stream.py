"""The session parser of GB/T 26875.3 streams: frames come out whatever the chunking, bad
frames and garbage are reported with their bytes and reason, and it resynchronises on the
next start marker. Random and mutated bytes never crash or stall it, nothing is reported
twice or lost (every byte fed is in a frame, a report, or what close() says was left), and it
never holds more than one longest frame."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.gb26875 import frame as fr
from devices.gb26875.frame import Command, Frame, TimeLabel
from devices.gb26875.stream import MAX_FRAME, BadBytes, FrameReader


def _frame(serial: int, data: bytes = b"\x15\x01\x01\x00\x00\x00\x01\x01\x1a") -> bytes:
    return fr.encode(
        Frame(serial, Command.SEND, data, TimeLabel(0, 0, 12, 4, 12, 26), bytes(6), fr.address(100))
    )


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return out


def _run(chunks: list[bytes]) -> tuple[list[Frame], list[BadBytes], FrameReader]:
    reader = FrameReader()
    frames: list[Frame] = []
    bad: list[BadBytes] = []
    for c in chunks:
        for item in reader.feed(c):
            (frames if isinstance(item, Frame) else bad).append(item)  # type: ignore[arg-type]
        assert reader.pending < MAX_FRAME
    return frames, bad, reader


def _accounted(
    stream: bytes, frames: list[Frame], bad: list[BadBytes], reader: FrameReader
) -> None:
    left = reader.close()
    total = sum(fr.OVERHEAD + len(f.data) for f in frames) + sum(len(b.raw) for b in bad)
    total += len(left.raw) if left else 0
    assert total == len(stream), (total, len(stream))


@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=8), st.lists(st.integers(0, 10_000)))
def test_frames_come_out_whatever_the_chunking(serials: list[int], cuts: list[int]) -> None:
    """Back-to-back frames split anywhere (a byte at a time included) come out whole, in
    order, with nothing reported."""
    stream = b"".join(_frame(s) for s in serials)
    frames, bad, reader = _run(_chunks(stream, cuts))
    assert [f.serial for f in frames] == serials and bad == []
    _accounted(stream, frames, bad, reader)


def test_one_byte_at_a_time() -> None:
    """The slowest link: a frame trickling in byte by byte."""
    stream = _frame(7) + _frame(8)
    frames, bad, _ = _run([stream[i : i + 1] for i in range(len(stream))])
    assert [f.serial for f in frames] == [7, 8] and bad == []


def test_garbage_between_frames_is_reported_once_and_the_frames_survive() -> None:
    """Line noise before, between and after frames: each run reported once, as it was."""
    noise = [b"\x00\xff\x13", b"AT+CSQ\r\n", b"\x40\x23\x23"]
    stream = noise[0] + _frame(1) + noise[1] + _frame(2) + noise[2]
    frames, bad, reader = _run([stream])
    assert [f.serial for f in frames] == [1, 2]
    assert [b.raw for b in bad] == noise
    assert all(b.reason == "garbage between frames" for b in bad)
    assert reader.close() is None
    # A lone "@" at the end may begin the next start marker: it is kept, and told at close.
    frames, bad, reader = _run([_frame(3) + b"\x17@"])
    assert [b.raw for b in bad] == [b"\x17"]
    left = reader.close()
    assert left is not None and left.raw == b"@" and "truncated" in left.reason


def test_a_bad_checksum_is_reported_and_the_next_frame_still_comes() -> None:
    """A frame with a flipped checksum: reported with its bytes and reason; the next frame,
    right behind it, is found."""
    broken = bytearray(_frame(1))
    broken[-3] ^= 0xFF
    stream = bytes(broken) + _frame(2)
    frames, bad, reader = _run([stream])
    assert [f.serial for f in frames] == [2]
    assert len(bad) == 1 and bad[0].raw == bytes(broken) and "checksum" in bad[0].reason
    _accounted(stream, frames, bad, reader)


def test_a_truncated_frame_followed_by_a_whole_one() -> None:
    """A UTD that lost power mid-frame and sent again: the cut frame is reported, the whole
    one after it decoded (its start marker lies inside the cut frame's declared length)."""
    cut = _frame(1)[:20]
    stream = cut + _frame(2)
    frames, bad, reader = _run([stream])
    assert [f.serial for f in frames] == [2]
    assert [b.raw for b in bad] == [cut] and bad[
        0
    ].reason == "truncated: a whole frame began 20 bytes in"
    _accounted(stream, frames, bad, reader)


def test_a_length_beyond_the_limit_is_a_false_start() -> None:
    """A start marker whose length says 60,000 bytes is not waited for."""
    bogus = b"@@" + bytes(22) + (60_000).to_bytes(2, "little")
    stream = bogus + _frame(3)
    frames, bad, reader = _run([stream])
    assert [f.serial for f in frames] == [3]
    assert "at most 1024" in bad[0].reason
    _accounted(stream, frames, bad, reader)


@settings(max_examples=120)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 10_000), max_size=20))
def test_random_bytes_never_crash_stall_or_go_missing(noise: bytes, cuts: list[int]) -> None:
    """Whatever arrives, each byte ends up in exactly one place; a frame after it is found."""
    stream = noise + b"\x00" * 1100 + _frame(9)
    frames, bad, reader = _run(_chunks(stream, cuts))
    assert frames and frames[-1].serial == 9
    _accounted(stream, frames, bad, reader)


@settings(max_examples=120)
@given(
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.lists(st.integers(0, 10_000), max_size=10),
)
def test_mutated_frames_never_crash_and_the_rest_survive(
    serials: list[int], flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    """Frames with bytes overwritten anywhere (markers, lengths, checksums): no crash, every
    byte accounted for, and a clean frame sent after a pause of zeros still comes out."""
    stream = bytearray(b"".join(_frame(s) for s in serials))
    for at, value in flips:
        stream[at % len(stream)] = value
    stream += b"\x00" * 1100 + _frame(0xBEEF)
    frames, bad, reader = _run(_chunks(bytes(stream), cuts))
    assert frames[-1].serial == 0xBEEF
    _accounted(bytes(stream), frames, bad, reader)
