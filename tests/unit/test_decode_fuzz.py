"""Whatever arrives, the decoder stores it or dead-letters it; it never raises."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.catalog import DeviceType
from devices.registry import Device, Registry
from ingest.decode import BatchDecoder, Limits, RawMessage

REG = Registry.of(
    [Device(1, "em-1", "u", DeviceType.ELECTRICAL), Device(2, "utd-1", "u", DeviceType.UTD)]
)
NOW = int(time.time() * 1000)
DECODER = BatchDecoder("fs/v1", Limits(max_payload_bytes=4096))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.just(NOW),
    st.just("2026-11-23T10:00:00+08:00"),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
metric_names = st.sampled_from(["residual_current_ma", "temp_c_1", "level_m", "bogus", "", "温度"])
plausible = st.fixed_dictionaries(
    {"ts": scalars, "metrics": st.dictionaries(metric_names, scalars, max_size=4)},
    optional={"seq": scalars, "readings": st.lists(json_values, max_size=3), "extra": json_values},
)
events = st.fixed_dictionaries(
    {"ts": scalars, "seq": scalars, "kind": st.sampled_from(["fire_alarm", "reset", "nope", ""])},
    optional={"loop": scalars, "point": scalars, "text": scalars},
)


def encode(value: Any) -> bytes:
    try:
        return msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value).encode()


payloads = st.one_of(
    st.binary(max_size=300),
    plausible.map(encode),
    events.map(encode),
    json_values.map(encode),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)
topics = st.sampled_from(
    [
        "fs/v1/em-1/telemetry",
        "fs/v1/utd-1/event",
        "fs/v1/em-1/status",
        "fs/v1/ghost/telemetry",
        "fs/v1/em-1/event",
        "fs/v1//telemetry",
        "fs/v1/em-1/telemetry/x",
        "#",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=10))
def test_every_message_is_stored_or_dead_lettered(batch: list[tuple[str, bytes]]) -> None:
    """Random bytes, wrong types, NaN, missing or extra fields, unicode, deep JSON: no exception."""
    msgs = [RawMessage(t, p, i) for i, (t, p) in enumerate(batch)]
    out = DECODER.decode(msgs, REG, NOW)
    rejected = len(out.rejections)
    assert rejected <= len(msgs)
    limit = DECODER.limits.max_payload_bytes
    for r in out.rejections:
        # Kept whole up to the payload limit (replayable), cut to 2048 bytes beyond it.
        assert r.reason and len(r.payload) <= limit
        assert len(r.payload) == 2048 if r.truncated else r.payload in {p for _, p in batch}
        # Every text the dead-letter row holds is one PostgreSQL accepts.
        for text in (r.topic, r.detail, r.device_id or ""):
            assert "\x00" not in text
            text.encode("utf-8")
    for e in out.events:
        assert "\x00" not in e.text
        e.text.encode("utf-8")
    # Every value that was accepted is finite and every accepted reading has a known device.
    assert (out.dev == 1).all()
    assert bool((out.value == out.value).all())


def test_huge_and_deep_payloads_are_refused_cheaply() -> None:
    """A 1 MB payload is refused by size before it is parsed."""
    big = RawMessage("fs/v1/em-1/telemetry", b"{" + b" " * 1_000_000 + b"}", 1)
    out = DECODER.decode([big], REG, NOW)
    assert [r.reason for r in out.rejections] == ["oversize"]
    assert len(out.rejections[0].payload) == 2048
