"""Decode and validate a batch of MQTT messages into arrays; anything bad becomes a rejection."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from devices.catalog import (
    EVENT_KIND_IDS,
    EVENT_KINDS_BY_TYPE,
    METRIC_BY_NAME,
    EventKind,
    metrics_for,
)
from devices.payloads import (
    EVENT_DECODER,
    STATUS_DECODER,
    TELEMETRY_DECODER,
    BadTimestamp,
    parse_ts_ms,
)
from devices.registry import Device, Registry

PAYLOAD_KEEP = 2048  # bytes kept of an oversize payload (smaller ones are kept whole)
# The integer columns an event's loop and point land in (PostgreSQL integer).
_INT4 = (-(2**31), 2**31 - 1)
_INT8 = (-(2**63), 2**63 - 1)


class RawMessage(NamedTuple):
    """A message as it came off the broker (a named tuple: one is made per message received,
    and a frozen dataclass costs twice as much to make)."""

    topic: str
    payload: bytes
    mid: int = 0
    replay_of: int | None = None  # the dead letter this is a replay of (not from the broker)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was not stored; it goes to rejected_messages."""

    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes
    truncated: bool = False
    replay_of: int | None = None


def db_text(text: str) -> str:
    """Text PostgreSQL will store: NUL and lone surrogates (which it refuses) made visible."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def rejection(
    topic: str,
    device_id: str | None,
    reason: str,
    detail: str,
    payload: bytes,
    keep: int,
    replay_of: int | None = None,
) -> Rejection:
    """A dead letter whose every text column the database accepts; payloads over keep are cut."""
    truncated = len(payload) > keep
    return Rejection(
        db_text(topic),
        None if device_id is None else db_text(device_id),
        reason,
        db_text(detail),
        payload[:PAYLOAD_KEEP] if truncated else payload,
        truncated,
        replay_of,
    )


@dataclass(slots=True)
class EventRow:
    """One decoded event."""

    device_num: int
    ts_ms: int
    seq: int
    kind: int
    loop: int | None
    point: int | None
    text: str


@dataclass(slots=True)
class Decoded:
    """The valid content of a batch as columns, plus rejections, events and statuses."""

    dev: npt.NDArray[np.int32]
    metric: npt.NDArray[np.int16]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    events: list[EventRow] = field(default_factory=list)
    statuses: dict[int, tuple[str, int]] = field(default_factory=dict)
    last_seen: dict[int, int] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def readings(self) -> int:
        """How many metric values the batch holds."""
        return int(self.value.shape[0])


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits that make a message invalid."""

    max_payload_bytes: int = 64 * 1024
    max_future_ms: int = 300_000
    max_age_ms: int = 400 * 86_400_000
    max_readings: int = 10_000


_ALLOWED: dict[str, dict[str, tuple[int, float, float]]] = {}


def _allowed(device_type: str) -> dict[str, tuple[int, float, float]]:
    table = _ALLOWED.get(device_type)
    if table is None:
        from devices.catalog import DeviceType

        table = {m.name: (m.id, m.low, m.high) for m in metrics_for(DeviceType(device_type))}
        _ALLOWED[device_type] = table
    return table


class BatchDecoder:
    """Turns RawMessages into a Decoded batch against the current registry."""

    def __init__(self, prefix: str, limits: Limits) -> None:
        self.prefix_parts = prefix.split("/")
        self.limits = limits

    def device_id_of(self, topic: str) -> str | None:
        """The device id a topic names, if it is one of ours."""
        parts = topic.split("/")
        n = len(self.prefix_parts)
        if len(parts) == n + 2 and parts[:n] == self.prefix_parts:
            return parts[n]
        return None

    def decode(self, messages: list[RawMessage], registry: Registry, now_ms: int) -> Decoded:
        """Decode every message; never raises for bad input."""
        dev: list[int] = []
        met: list[int] = []
        tss: list[int] = []
        val: list[float] = []
        out = Decoded(
            np.empty(0, np.int32),
            np.empty(0, np.int16),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
        )
        lo_ts = now_ms - self.limits.max_age_ms
        hi_ts = now_ms + self.limits.max_future_ms
        np_prefix = len(self.prefix_parts)
        for msg in messages:
            device_id: str | None = None
            try:
                parts = msg.topic.split("/")
                if len(parts) != np_prefix + 2 or parts[:np_prefix] != self.prefix_parts:
                    raise _Reject(
                        "bad_topic", f"topic is not {'/'.join(self.prefix_parts)}/<id>/<kind>"
                    )
                device_id, kind = parts[np_prefix], parts[np_prefix + 1]
                device = registry.by_id.get(device_id)
                if device is None:
                    raise _Reject("unknown_device", f"device {device_id!r} is not registered")
                if len(msg.payload) > self.limits.max_payload_bytes:
                    raise _Reject(
                        "oversize", f"{len(msg.payload)} bytes > {self.limits.max_payload_bytes}"
                    )
                if kind == "telemetry":
                    n0 = len(val)
                    latest = self._telemetry(msg.payload, device, lo_ts, hi_ts, dev, met, tss, val)
                    if len(val) == n0 and latest == 0:
                        continue
                elif kind == "event":
                    latest = self._event(msg.payload, device, lo_ts, hi_ts, out.events)
                elif kind == "status":
                    self._status(msg.payload, device, now_ms, out.statuses)
                    continue
                else:
                    raise _Reject("bad_topic", f"unknown message kind {kind!r}")
                prev = out.last_seen.get(device.num, 0)
                if latest > prev:
                    out.last_seen[device.num] = latest
            except _Reject as r:
                out.rejections.append(
                    rejection(
                        msg.topic,
                        device_id,
                        r.reason,
                        r.detail,
                        msg.payload,
                        self.limits.max_payload_bytes,
                        msg.replay_of,
                    )
                )
        if val:
            out.dev = np.asarray(dev, np.int32)
            out.metric = np.asarray(met, np.int16)
            out.ts = np.asarray(tss, np.int64)
            out.value = np.asarray(val, np.float64)
        return out

    def _telemetry(
        self,
        payload: bytes,
        device: Device,
        lo_ts: int,
        hi_ts: int,
        dev: list[int],
        met: list[int],
        tss: list[int],
        val: list[float],
    ) -> int:
        try:
            msg = TELEMETRY_DECODER.decode(payload)
        except msgspec.DecodeError as exc:
            raise _Reject("malformed", str(exc)[:200]) from None
        except (ValueError, RecursionError) as exc:  # deep nesting, bad UTF-8
            raise _Reject("malformed", str(exc)[:200]) from None
        if msg.readings is not None:
            if msg.metrics is not None or msg.ts is not None:
                raise _Reject("malformed", "give either readings[] or ts+metrics, not both")
            if len(msg.readings) > self.limits.max_readings:
                raise _Reject(
                    "oversize", f"{len(msg.readings)} readings > {self.limits.max_readings}"
                )
            readings = [(r.ts, r.metrics) for r in msg.readings]
        elif msg.ts is not None and msg.metrics is not None:
            readings = [(msg.ts, msg.metrics)]
        else:
            raise _Reject("malformed", "telemetry needs ts and metrics, or readings[]")
        allowed = _allowed(device.type)
        num = device.num
        # Validate everything before appending anything: a message is stored whole or not at all.
        staged: list[tuple[int, int, float]] = []
        latest = 0
        for raw_ts, metrics in readings:
            try:
                ts = parse_ts_ms(raw_ts)
            except BadTimestamp as exc:
                raise _Reject("bad_timestamp", str(exc)) from None
            if ts > hi_ts:
                raise _Reject("future_timestamp", f"ts {ts} is more than the allowed skew ahead")
            if ts < lo_ts:
                raise _Reject("ancient_timestamp", f"ts {ts} is older than retention")
            latest = max(latest, ts)
            for name, value in metrics.items():
                spec = allowed.get(name)
                if spec is None:
                    why = (
                        "unknown metric"
                        if name not in METRIC_BY_NAME
                        else "metric not of this type"
                    )
                    raise _Reject("unknown_metric", f"{why}: {name[:64]!r} for {device.type}")
                if not math.isfinite(value):
                    raise _Reject("not_finite", f"{name} is {value}")
                if value < spec[1] or value > spec[2]:
                    raise _Reject(
                        "out_of_range",
                        f"{name}={value} outside sensor range [{spec[1]}, {spec[2]}]",
                    )
                staged.append((spec[0], ts, value))
        for metric_id, ts, value in staged:
            dev.append(num)
            met.append(metric_id)
            tss.append(ts)
            val.append(value)
        return latest

    def _event(
        self, payload: bytes, device: Device, lo_ts: int, hi_ts: int, events: list[EventRow]
    ) -> int:
        try:
            msg = EVENT_DECODER.decode(payload)
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:
            raise _Reject("malformed", str(exc)[:200]) from None
        try:
            kind = EventKind(msg.kind)
        except ValueError:
            raise _Reject("unknown_event", f"event kind {msg.kind[:64]!r}") from None
        if kind not in EVENT_KINDS_BY_TYPE[device.type]:
            raise _Reject("unknown_event", f"{kind} is not an event of {device.type}")
        try:
            ts = parse_ts_ms(msg.ts)
        except BadTimestamp as exc:
            raise _Reject("bad_timestamp", str(exc)) from None
        if ts > hi_ts:
            raise _Reject("future_timestamp", f"ts {ts} is more than the allowed skew ahead")
        if ts < lo_ts:
            raise _Reject("ancient_timestamp", f"ts {ts} is older than retention")
        if not _INT8[0] <= msg.seq <= _INT8[1]:
            raise _Reject("out_of_range", f"seq {msg.seq} is outside a 64-bit integer")
        for name, number in (("loop", msg.loop), ("point", msg.point)):
            if number is not None and not _INT4[0] <= number <= _INT4[1]:
                raise _Reject(
                    "out_of_range", f"{name} {str(number)[:40]} is outside a 32-bit integer"
                )
        # The panel's text is free-form (often converted from GB 2312): keep the alarm, make the
        # bytes PostgreSQL refuses visible, rather than lose a fire alarm over its label.
        events.append(
            EventRow(
                device.num,
                ts,
                msg.seq,
                EVENT_KIND_IDS[kind],
                msg.loop,
                msg.point,
                db_text(msg.text[:500]),
            )
        )
        return ts

    def _status(
        self, payload: bytes, device: Device, now_ms: int, statuses: dict[int, tuple[str, int]]
    ) -> None:
        text = payload.strip().decode("utf-8", "replace").lower()
        if text.startswith("{"):
            try:
                text = STATUS_DECODER.decode(payload).status.lower()
            except (msgspec.DecodeError, ValueError, RecursionError) as exc:
                raise _Reject("malformed", str(exc)[:200]) from None
        if text not in ("online", "offline"):
            raise _Reject("malformed", "status must be online or offline")
        statuses[device.num] = (text, now_ms)
