"""What a decoded GB/T 26875.3 data unit says, as events of our MQTT contract (v1).

A component's status (type 2) gives one event per reported condition, at its loop and point
with the panel's description as the text; a system's status (type 1) and the transmission
device's own (type 21) give events without a point; an operation (types 4, 24) gives reset
and self-test. Every upload also says the device is alive (a heartbeat). Analog values,
versions, configurations and clocks give no event. Pure: the caller sets seq and the time
zone of the devices' clocks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from devices.catalog import EventKind
from devices.gb26875 import units as un
from devices.gb26875.codes import (
    COMPONENT_BITS,
    COMPONENT_TYPES,
    DUTY_ANSWER_BIT,
    OPERATION_BITS,
    SYSTEM_BITS,
    SYSTEM_TYPES,
    UTD_BITS,
    kinds,
    loop_point,
)
from devices.gb26875.frame import TimeLabel


@dataclass(frozen=True, slots=True)
class UtdEvent:
    """One event of the contract: its kind, where on the panel, the text, when (None: the
    device's clock label is no date, so the time it was received is used)."""

    kind: EventKind
    text: str
    at: dt.datetime | None
    loop: int | None = None
    point: int | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """What one data unit says: its events, whether it answers a duty check (查岗)."""

    events: list[UtdEvent] = field(default_factory=list)
    duty_answer: bool = False


def _when(t: TimeLabel, tz: dt.tzinfo) -> dt.datetime | None:
    return t.to_datetime(tz)


def _component_text(o: un.ComponentStatus) -> str:
    lp = loop_point(o.component_address)
    where = f"{lp.loop}回路{lp.point}号"
    if o.description.strip():
        return o.description.strip()
    return f"{COMPONENT_TYPES.get(o.component_type, f'部件类型{o.component_type}')}（{where}）"


def read(unit: un.DataUnit, tz: dt.tzinfo) -> Reading:
    """The events a data unit reports."""
    events: list[UtdEvent] = []
    duty = False
    for o in unit.objects:
        if isinstance(o, un.ComponentStatus):
            lp = loop_point(o.component_address)
            text = _component_text(o)
            at = _when(o.time, tz)
            events += [
                UtdEvent(k, text, at, lp.loop, lp.point) for k in kinds(o.status, COMPONENT_BITS)
            ]
        elif isinstance(o, un.SystemStatus):
            name = SYSTEM_TYPES.get(o.system_type, f"系统类型{o.system_type}")
            text = f"{name}（{o.system_address}号）"
            at = _when(o.time, tz)
            events += [UtdEvent(k, text, at) for k in kinds(o.status, SYSTEM_BITS)]
        elif isinstance(o, un.UtdStatus):
            at = _when(o.time, tz)
            events += [UtdEvent(k, "用户信息传输装置", at) for k in kinds(o.status, UTD_BITS)]
        elif isinstance(o, un.Operation):
            at = _when(o.time, tz)
            text = f"操作员{o.operator}"
            events += [UtdEvent(k, text, at) for k in kinds(o.flags, OPERATION_BITS)]
        elif isinstance(o, un.UtdOperation):
            at = _when(o.time, tz)
            text = f"传输装置操作员{o.operator}"
            events += [UtdEvent(k, text, at) for k in kinds(o.flags, OPERATION_BITS)]
            duty = duty or bool(o.flags >> DUTY_ANSWER_BIT & 1)
    return Reading(events, duty)
