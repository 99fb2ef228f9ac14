"""Decoding and validation of MQTT payloads into arrays; bad input becomes a rejection."""

from __future__ import annotations

import time

import msgspec
import pytest

from devices.catalog import METRIC_BY_NAME, DeviceType
from devices.registry import Device, Registry
from ingest.decode import BatchDecoder, Limits, RawMessage

REG = Registry.of(
    [
        Device(1, "em-1", "u1", DeviceType.ELECTRICAL),
        Device(2, "wl-1", "u1", DeviceType.WATER_LEVEL),
        Device(3, "utd-1", "u1", DeviceType.UTD),
    ]
)
NOW = int(time.time() * 1000)


def decode(topic: str, body: object) -> object:
    payload = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return BatchDecoder("fs/v1", Limits()).decode([RawMessage(topic, payload)], REG, NOW)


def reasons(body: object, topic: str = "fs/v1/em-1/telemetry") -> list[str]:
    return [r.reason for r in decode(topic, body).rejections]  # type: ignore[attr-defined]


def test_single_reading_becomes_columns() -> None:
    """A reading with two metrics becomes two rows of (device, metric, ts, value)."""
    d = decode(
        "fs/v1/em-1/telemetry",
        {"ts": NOW, "seq": 1, "metrics": {"residual_current_ma": 41.5, "temp_c_1": 30}},
    )
    assert d.rejections == []  # type: ignore[attr-defined]
    assert d.dev.tolist() == [1, 1]  # type: ignore[attr-defined]
    assert sorted(d.metric.tolist()) == sorted(  # type: ignore[attr-defined]
        [METRIC_BY_NAME["residual_current_ma"].id, METRIC_BY_NAME["temp_c_1"].id]
    )
    assert d.last_seen == {1: NOW}  # type: ignore[attr-defined]


def test_store_and_forward_batch_and_rfc3339() -> None:
    """readings[] batches are accepted, with RFC 3339 or epoch-ms timestamps."""
    d = decode(
        "fs/v1/wl-1/telemetry",
        {
            "readings": [
                {"ts": "2026-01-01T00:00:00Z", "metrics": {"level_m": 2.9}},
                {"ts": NOW - 5000, "metrics": {"level_m": 2.8}},
            ]
        },
    )
    assert d.rejections == []  # type: ignore[attr-defined]
    assert d.value.tolist() == [2.9, 2.8]  # type: ignore[attr-defined]
    assert d.ts.tolist()[0] == 1767225600000  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed"),
        ({"ts": NOW, "metrics": {"residual_current_ma": "high"}}, "malformed"),
        ({"ts": NOW, "metrics": {"level_m": 1.0}}, "unknown_metric"),
        ({"ts": NOW, "metrics": {"bogus": 1.0}}, "unknown_metric"),
        ({"ts": 1700000000, "metrics": {"temp_c_1": 30}}, "bad_timestamp"),
        ({"ts": NOW, "metrics": {"temp_c_1": 999.0}}, "out_of_range"),
        ({"ts": NOW + 3_600_000, "metrics": {"temp_c_1": 30}}, "future_timestamp"),
        ({"ts": "yesterday", "metrics": {"temp_c_1": 30}}, "bad_timestamp"),
        ({"ts": "2026-01-01T00:00:00", "metrics": {"temp_c_1": 30}}, "bad_timestamp"),
        ({"ts": NOW, "metrics": {"temp_c_1": 30}, "extra": 1}, "malformed"),
        ({"metrics": {"temp_c_1": 30}}, "malformed"),
        (b"x" * 70000, "oversize"),
    ],
)
def test_bad_telemetry_is_rejected_with_reason(body: object, reason: str) -> None:
    """Each kind of bad telemetry is rejected with its own reason, nothing stored."""
    assert reasons(body) == [reason]


def test_infinite_and_nan_values_are_rejected() -> None:
    """Numbers too large for a double, and NaN literals, are refused, not stored."""
    for literal in (b"1e999", b"NaN", b"Infinity"):
        body = b'{"ts": %d, "metrics": {"temp_c_1": %s}}' % (NOW, literal)
        assert reasons(body) == ["malformed"], literal


def test_one_bad_metric_rejects_the_whole_message() -> None:
    """A message is stored whole or not at all."""
    d = decode("fs/v1/em-1/telemetry", {"ts": NOW, "metrics": {"temp_c_1": 30, "temp_c_2": -99}})
    assert [r.reason for r in d.rejections] == ["out_of_range"]  # type: ignore[attr-defined]
    assert d.readings == 0  # type: ignore[attr-defined]


def test_unknown_device_and_bad_topic() -> None:
    """Messages from unregistered devices or on foreign topics are rejected."""
    assert reasons({"ts": NOW, "metrics": {}}, "fs/v1/ghost/telemetry") == ["unknown_device"]
    assert reasons({"ts": NOW, "metrics": {}}, "fs/v1/em-1/whatever") == ["bad_topic"]
    assert reasons({"ts": NOW, "metrics": {}}, "other/em-1/telemetry") == ["bad_topic"]


def test_events_and_status() -> None:
    """UTD events are decoded; events of another device type and bad statuses are rejected."""
    d = decode("fs/v1/utd-1/event", {"ts": NOW, "seq": 3, "kind": "fire_alarm", "loop": 1})
    assert len(d.events) == 1 and d.rejections == []  # type: ignore[attr-defined]
    assert reasons({"ts": NOW, "seq": 1, "kind": "fire_alarm"}, "fs/v1/wl-1/event") == [
        "unknown_event"
    ]
    s = decode("fs/v1/utd-1/status", b"offline")
    assert s.statuses == {3: ("offline", NOW)}  # type: ignore[attr-defined]
    assert reasons(b"sleepy", "fs/v1/utd-1/status") == ["malformed"]
