"""What an operator's resolve or close means for the condition, for every rule kind.

- Reading rules (above, below, outside, rate) and deadman rules: the condition still holds, so
  nothing opens until it clears and breaches again, or, with `rearm: N`, until N seconds after
  the action if it still holds then.
- Event rules: every event is seen; the next fire alarm after a close is a new transition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from devices.catalog import EVENT_KIND_IDS, METRIC_BY_NAME, DeviceType, EventKind
from devices.registry import Device, Registry
from rules.engine import Point, RuleEngine
from rules.model import RuleFile

T0 = 1_767_225_600_000
REG = Registry.of(
    [
        Device(1, "wp-1", "u", DeviceType.WATER_PRESSURE, heartbeat_s=10),
        Device(2, "utd-1", "u", DeviceType.UTD, heartbeat_s=10),
    ]
)
P = METRIC_BY_NAME["pressure_mpa"].id
MSG = {"en": "x", "zh-CN": "y"}
# (rule, a value in breach, a value back to normal) per reading kind, on water pressure.
KINDS: dict[str, tuple[dict[str, Any], float, float]] = {
    "above": ({"kind": "above", "threshold": 1.2}, 1.5, 0.5),
    "below": ({"kind": "below", "threshold": 0.1}, 0.05, 0.5),
    "outside": ({"kind": "outside", "low": 0.1, "high": 1.2}, 2.0, 0.5),
}


def _engine(spec: dict[str, Any], rearm: float | None) -> RuleEngine:
    rule = {"id": "r", "severity": "major", "message": MSG, **spec}
    if rearm is not None:
        rule["rearm"] = rearm
    return RuleEngine(RuleFile.model_validate({"rules": [rule]}), REG)


def _read(e: RuleEngine, s: float, v: float) -> list[bool]:
    out = e.evaluate(
        np.array([1], np.int32),
        np.array([P], np.int16),
        np.array([T0 + int(s * 1000)], np.int64),
        np.array([v], np.float64),
    )
    return [t.opened for t in out]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_without_rearm_a_resolved_breach_opens_again_only_after_clearing(kind: str) -> None:
    """Resolved by hand while in breach: more breaching readings open nothing; after a clear,
    the next breach opens."""
    spec, bad, good = KINDS[kind]
    e = _engine({"device_type": "water_pressure", "metric": "pressure_mpa", **spec}, None)
    assert _read(e, 0, bad) == [True]
    e.operator_closed("r", 1, T0 + 1000)
    assert e.rearm_due(T0 + 3_600_000) == 0
    assert [_read(e, s, bad) for s in (2, 3, 4)] == [[], [], []]
    assert _read(e, 5, good) == [False]
    assert _read(e, 6, bad) == [True]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_with_rearm_a_breach_that_holds_opens_again_at_the_next_reading(kind: str) -> None:
    """With rearm: 60, the condition still in breach 60 s after the resolve opens again at the
    first reading after the re-arm; not before it."""
    spec, bad, _ = KINDS[kind]
    e = _engine({"device_type": "water_pressure", "metric": "pressure_mpa", **spec}, 60)
    assert _read(e, 0, bad) == [True]
    e.operator_closed("r", 1, T0 + 1000)
    assert e.rearm_due(T0 + 30_000) == 0
    assert _read(e, 30, bad) == []
    assert e.rearm_due(T0 + 61_000) == 1
    assert _read(e, 62, bad) == [True]


def test_rearm_of_a_condition_that_cleared_meanwhile_does_nothing() -> None:
    """Cleared before its re-arm time, the condition is simply clear: re-arm changes nothing."""
    spec, bad, good = KINDS["above"]
    e = _engine({"device_type": "water_pressure", "metric": "pressure_mpa", **spec}, 60)
    _read(e, 0, bad)
    e.operator_closed("r", 1, T0 + 1000)
    assert _read(e, 10, good) == [False]
    assert e.rearm_due(T0 + 61_000) == 0
    assert _read(e, 62, good) == []


def test_rate_rule_rearms_too() -> None:
    """A pressure still falling fast after the resolve opens again after its re-arm time."""
    spec = {
        "device_type": "water_pressure",
        "metric": "pressure_mpa",
        "kind": "rate",
        "direction": "falling",
        "threshold": 0.05,
        "per": "minute",
        "window_s": 60,
    }
    e = _engine(spec, 30)
    assert _read(e, 0, 1.0) == []
    assert _read(e, 10, 0.5) == [True]
    e.operator_closed("r", 1, T0 + 11_000)
    assert _read(e, 20, 0.3) == []
    assert e.rearm_due(T0 + 41_000) == 1
    assert _read(e, 42, 0.1) == [True]


def test_deadman_rearms_while_the_device_stays_silent() -> None:
    """An offline alert closed while the device is still silent opens again after re-arm."""
    e = _engine({"kind": "deadman", "threshold": 30}, 60)
    e.seen(np.array([1], np.int32), np.array([T0], np.int64))
    (opened,) = e.check_silence(T0 + 31_000)
    assert opened.opened
    e.operator_closed("r", 1, T0 + 32_000)
    assert e.check_silence(T0 + 60_000) == []
    assert e.rearm_due(T0 + 93_000) == 1
    (again,) = e.check_silence(T0 + 93_000)
    assert again.opened


def test_an_event_rule_sees_every_fire_alarm_whatever_the_operator_did() -> None:
    """No re-arm is needed for event rules: each fire alarm is a transition; a reset clears."""
    rule = {
        "id": "fire",
        "device_type": "user_transmission_device",
        "kind": "event",
        "event": "fire_alarm",
        "severity": "critical",
        "message": MSG,
    }
    e = RuleEngine(RuleFile.model_validate({"rules": [rule]}), REG)
    fire, reset = EVENT_KIND_IDS[EventKind.FIRE_ALARM], EVENT_KIND_IDS[EventKind.RESET]
    empty = (np.empty(0, np.int32), np.empty(0, np.int16), np.empty(0, np.int64), np.empty(0))

    def events(*evs: tuple[int, int, Point | None]) -> list[tuple[bool, str]]:
        out = e.evaluate(
            *empty,
            np.array([2] * len(evs), np.int32),
            np.array([k for _, k, _ in evs], np.int16),
            np.array([T0 + s * 1000 for s, _, _ in evs], np.int64),
            [p for *_, p in evs],
        )
        return [(t.opened, t.point_key) for t in out]

    assert events((0, fire, Point(1, 3, "3F"))) == [(True, "1-3")]
    e.operator_closed("fire", 2, T0 + 1000)  # no effect: nothing to re-arm
    # Two detectors in the same second, and the first one again.
    assert events((5, fire, Point(1, 4)), (5, fire, Point(1, 5)), (6, fire, Point(1, 3))) == [
        (True, "1-4"),
        (True, "1-5"),
        (True, "1-3"),
    ]
    assert events((4, fire, Point(2, 1))) == [], "older than the last event: late"
    assert events((7, reset, None)) == [(False, "")]
    assert events((8, reset, None)) == [], "nothing alarming: nothing to clear"


def test_an_event_rule_refuses_rearm() -> None:
    """`rearm` on an event rule is a configuration error that says why."""
    with pytest.raises(ValueError, match="every event is seen"):
        _engine(
            {"device_type": "user_transmission_device", "kind": "event", "event": "fire_alarm"},
            60,
        )
