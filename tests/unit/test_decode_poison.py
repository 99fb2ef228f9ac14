"""Messages PostgreSQL would refuse are caught at decode: rejected with a reason, or made storable."""

from __future__ import annotations

import time

import pytest

from devices.catalog import DeviceType
from devices.registry import Device, Registry
from ingest.decode import BatchDecoder, Decoded, Limits, RawMessage, db_text

REG = Registry.of(
    [Device(1, "em-1", "u1", DeviceType.ELECTRICAL), Device(3, "utd-1", "u1", DeviceType.UTD)]
)
NOW = int(time.time() * 1000)


def decode(topic: str, payload: bytes) -> Decoded:
    return BatchDecoder("fs/v1", Limits()).decode([RawMessage(topic, payload)], REG, NOW)


def storable(text: str) -> bool:
    """What PostgreSQL's text type accepts: no NUL, valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def test_nul_in_event_text_keeps_the_fire_alarm_with_a_visible_escape() -> None:
    """A fire alarm whose panel text holds a JSON \\u0000 is stored, its text without the NUL."""
    body = b'{"ts": %d, "seq": 1, "kind": "fire_alarm", "text": "3F\\u0000east"}' % NOW
    d = decode("fs/v1/utd-1/event", body)
    assert d.rejections == []
    assert len(d.events) == 1 and storable(d.events[0].text)
    assert d.events[0].text == "3F\\u0000east"


def test_nul_in_an_unknown_field_name_gives_a_storable_rejection() -> None:
    """The decoder's own error names the field; the rejection's detail must still be storable."""
    body = b'{"ts": %d, "metrics": {"residual_current_ma": 1.0}, "x\\u0000y": 1}' % NOW
    d = decode("fs/v1/em-1/telemetry", body)
    [r] = d.rejections
    assert r.reason == "malformed"
    assert storable(r.detail) and storable(r.topic)
    assert "x\\u0000y" in r.detail


def test_nul_in_a_metric_name_gives_a_storable_rejection() -> None:
    """An unknown metric whose name holds a NUL is rejected with a detail the database takes."""
    body = b'{"ts": %d, "metrics": {"rc\\u0000": 1.0}}' % NOW
    [r] = decode("fs/v1/em-1/telemetry", body).rejections
    assert r.reason == "unknown_metric" and storable(r.detail)


@pytest.mark.parametrize(
    ("field", "value"),
    [("loop", 2**31), ("loop", -(2**31) - 1), ("point", 10**23), ("seq", 2**63)],
)
def test_integers_outside_their_column_are_rejected(field: str, value: int) -> None:
    """loop/point beyond PostgreSQL integer and seq beyond bigint are rejected, not stored."""
    fields = {"loop": 1, "point": 1, "seq": 1, field: value}
    body = b'{"ts": %d, "seq": %d, "kind": "fire_alarm", "loop": %d, "point": %d}' % (
        NOW,
        fields["seq"],
        fields["loop"],
        fields["point"],
    )
    d = decode("fs/v1/utd-1/event", body)
    assert [r.reason for r in d.rejections] == ["out_of_range"]
    assert d.events == []


def test_integers_at_the_column_limits_are_stored() -> None:
    """The largest loop and point a PostgreSQL integer holds are accepted."""
    body = b'{"ts": %d, "seq": 1, "kind": "fire_alarm", "loop": %d, "point": %d}' % (
        NOW,
        2**31 - 1,
        2**31 - 1,
    )
    d = decode("fs/v1/utd-1/event", body)
    assert d.rejections == [] and d.events[0].loop == 2**31 - 1


@pytest.mark.parametrize("kind", ["status", "telemetry", "event"])
def test_deep_nesting_is_rejected_on_every_topic(kind: str) -> None:
    """A payload nested 30,000 levels deep is a rejection on every topic kind, never an exception."""
    # An extra field the status decoder skips over: skipping recurses once per level.
    body = b'{"status": "online", "ts": 1, "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    d = decode(f"fs/v1/em-1/{kind}", body)
    assert [r.reason for r in d.rejections] == ["malformed"]


def test_lone_surrogate_in_event_text_is_rejected_or_storable() -> None:
    """A JSON lone surrogate never reaches the database as invalid UTF-8."""
    body = b'{"ts": %d, "seq": 1, "kind": "fault", "text": "a\\ud800b"}' % NOW
    d = decode("fs/v1/utd-1/event", body)
    assert all(storable(e.text) for e in d.events)
    assert all(storable(r.detail) for r in d.rejections)
    assert len(d.events) + len(d.rejections) == 1


def test_payloads_are_kept_whole_unless_oversize() -> None:
    """A rejected payload under the size limit is kept whole (so it can be replayed)."""
    body = b'{"ts": %d, "metrics": {"nope": 1.0}, "pad": "%s"}' % (NOW, b"x" * 5000)
    [r] = decode("fs/v1/em-1/telemetry", body).rejections
    assert r.payload == body and not r.truncated
    big = BatchDecoder("fs/v1", Limits(max_payload_bytes=4096))
    [r2] = big.decode([RawMessage("fs/v1/em-1/telemetry", body)], REG, NOW).rejections
    assert r2.reason == "oversize" and r2.truncated and len(r2.payload) < len(body)


def test_db_text_escapes_what_postgres_refuses() -> None:
    """db_text leaves ordinary text alone and escapes NUL and lone surrogates."""
    assert db_text("三楼东走廊烟感") == "三楼东走廊烟感"
    assert storable(db_text("a\x00b")) and storable(db_text("a\ud800b"))
