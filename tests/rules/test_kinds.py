"""Each rule kind on its own: duration, rate of change, deadman, restart and reload."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from devices.catalog import METRIC_BY_NAME, DeviceType
from devices.registry import Device, Registry
from rules.engine import RuleEngine
from rules.model import RuleFile

P = METRIC_BY_NAME["pressure_mpa"].id
RC = METRIC_BY_NAME["residual_current_ma"].id
T0 = 1_767_225_600_000
REG = Registry.of(
    [
        Device(1, "wp-1", "u", DeviceType.WATER_PRESSURE, heartbeat_s=60),
        Device(2, "em-1", "u", DeviceType.ELECTRICAL, heartbeat_s=10),
    ]
)
MSG = {"en": "x", "zh-CN": "y"}


def rules(*specs: dict[str, Any]) -> RuleFile:
    return RuleFile.model_validate(
        {"rules": [{"severity": "major", "message": MSG, **s} for s in specs]}
    )


def feed(
    e: RuleEngine, rows: Sequence[tuple[int, int, float, float]]
) -> list[tuple[str, float, bool]]:
    """rows: (device, metric, seconds after T0, value) → (rule, seconds, opened)."""
    d, m, s, v = (list(c) for c in zip(*rows, strict=True))
    out = e.evaluate(
        np.array(d, np.int32),
        np.array(m, np.int16),
        np.array([T0 + int(x * 1000) for x in s], np.int64),
        np.array(v, np.float64),
    )
    return [(t.rule.id, (t.ts_ms - T0) / 1000, t.opened) for t in out]


HOT = {
    "id": "hot",
    "device_type": "electrical_monitor",
    "kind": "above",
    "metric": "residual_current_ma",
    "threshold": 300,
    "for": 30,
}


def test_duration_opens_only_after_holding() -> None:
    """With for: 30 s, a breach opens at the first reading 30 s after it began, not before."""
    e = RuleEngine(rules(HOT), REG)
    assert feed(e, [(2, RC, 0, 400), (2, RC, 10, 400), (2, RC, 29.9, 400)]) == []
    assert feed(e, [(2, RC, 30, 400)]) == [("hot", 30, True)]


def test_duration_resets_when_the_breach_breaks() -> None:
    """A dip under the threshold restarts the clock."""
    e = RuleEngine(rules(HOT), REG)
    assert feed(e, [(2, RC, 0, 400), (2, RC, 20, 100), (2, RC, 25, 400), (2, RC, 50, 400)]) == []
    assert feed(e, [(2, RC, 55, 400)]) == [("hot", 55, True)]


def test_gap_longer_than_duration_opens_at_the_next_reading() -> None:
    """Readings 5 minutes apart, both over: the breach has held, so it opens at the second."""
    e = RuleEngine(rules(HOT), REG)
    assert feed(e, [(2, RC, 0, 400), (2, RC, 300, 400)]) == [("hot", 300, True)]


def test_rate_of_change_detects_a_pipe_burst() -> None:
    """Pressure falling 0.2 MPa in 30 s (0.4 MPa/min) trips a 0.05 MPa/min rule; slow drift does not."""
    burst = {
        "id": "burst",
        "device_type": "water_pressure",
        "kind": "rate",
        "metric": "pressure_mpa",
        "threshold": 0.05,
        "per": "minute",
        "window_s": 60,
        "direction": "falling",
    }
    e = RuleEngine(rules(burst), REG)
    slow = [(1, P, s, 0.35 - s * 0.0001) for s in range(0, 120, 10)]
    assert feed(e, slow) == []
    # At 130 s the fall over the last minute is 0.043 MPa: under the limit. At 140 s it is 0.14.
    out = feed(e, [(1, P, 130, 0.30), (1, P, 140, 0.20), (1, P, 150, 0.15)])
    assert out == [("burst", 140, True)]
    # Stable again: the rate over the window falls back under the limit and the alert clears.
    out = feed(e, [(1, P, s, 0.15) for s in range(160, 230, 10)])
    assert out == [("burst", 210, False)]


def test_rate_window_looks_back_across_batches() -> None:
    """The reference reading for the rate may come from an earlier batch."""
    rising = {
        "id": "up",
        "device_type": "water_pressure",
        "kind": "rate",
        "metric": "pressure_mpa",
        "threshold": 1.0,
        "per": "minute",
        "window_s": 60,
        "direction": "rising",
    }
    e = RuleEngine(rules(rising), REG)
    assert feed(e, [(1, P, 0, 0.1)]) == []
    assert feed(e, [(1, P, 60, 1.2)]) == [("up", 60, True)]  # exactly window_s back counts


def test_deadman_opens_on_the_timer_and_clears_when_heard() -> None:
    """Silence longer than 3 heartbeats opens the deadman; the next message clears it."""
    dead = {
        "id": "offline",
        "kind": "deadman",
        "threshold": {"attribute": "heartbeat_s", "default": 60, "factor": 3},
    }
    e = RuleEngine(rules(dead, HOT), REG)
    feed(e, [(1, P, 0, 0.3), (2, RC, 0, 10)])
    assert e.check_silence(T0 + 29_000) == []
    opened = e.check_silence(T0 + 31_000)
    assert [(t.rule.id, t.device_num, t.opened) for t in opened] == [("offline", 2, True)]
    assert e.check_silence(T0 + 32_000) == []  # no repeat while still silent
    assert feed(e, [(2, RC, 40, 10)]) == [("offline", 40, False)]
    late = e.check_silence(T0 + 181_000)
    assert sorted((t.rule.id, t.device_num) for t in late) == [("offline", 1), ("offline", 2)]


def test_restart_continues_a_duration_half_way() -> None:
    """State saved half-way through a duration lets a new engine open on time, not restart the clock."""
    e = RuleEngine(rules(HOT), REG)
    feed(e, [(2, RC, 0, 400), (2, RC, 20, 400)])
    saved = e.take_dirty()
    assert [(s.rule_id, s.raw, s.active) for s in saved] == [("hot", True, False)]
    fresh = RuleEngine(rules(HOT), REG)
    assert fresh.load_state(saved) == 1
    assert feed(fresh, [(2, RC, 30, 400)]) == [("hot", 30, True)]


def test_restart_keeps_an_open_hysteresis() -> None:
    """An open alert stays open after a restart while the value sits between clear and threshold."""
    hyst = {**HOT, "for": 0, "clear": 250}
    e = RuleEngine(rules(hyst), REG)
    assert feed(e, [(2, RC, 0, 400)]) == [("hot", 0, True)]
    fresh = RuleEngine(rules(hyst), REG)
    fresh.load_state(e.take_dirty())
    assert feed(fresh, [(2, RC, 10, 280)]) == []
    assert feed(fresh, [(2, RC, 20, 200)]) == [("hot", 20, False)]


def test_reload_with_changed_threshold_keeps_state() -> None:
    """Reloading with a new threshold keeps an open alert open and applies the new level."""
    e = RuleEngine(rules({**HOT, "for": 0}), REG)
    assert feed(e, [(2, RC, 0, 400)]) == [("hot", 0, True)]
    new = e.reloaded(rules({**HOT, "for": 0, "threshold": 500}), REG)
    assert feed(new, [(2, RC, 10, 450)]) == [("hot", 10, False)]
    assert feed(new, [(2, RC, 20, 520)]) == [("hot", 20, True)]


def test_reload_drops_state_of_a_rule_that_changed_meaning() -> None:
    """A rule id now pointing at another metric starts afresh instead of inheriting state."""
    e = RuleEngine(rules({**HOT, "for": 0}), REG)
    feed(e, [(2, RC, 0, 400)])
    moved = {**HOT, "for": 0, "metric": "temp_c_1", "threshold": 70}
    new = e.reloaded(rules(moved), REG)
    assert not new.active.any()


def test_deadman_waits_after_a_restart_before_calling_devices_silent() -> None:
    """Devices last heard long ago get a full limit after start to show up (the backlog arrives)."""
    dead = {"id": "offline", "kind": "deadman", "threshold": 30}
    e = RuleEngine(rules(dead), REG)
    e.seen(np.array([1], np.int32), np.array([T0], np.int64))
    e.silence_from_ms = T0 + 3_600_000  # started an hour later
    assert e.check_silence(T0 + 3_600_000 + 29_000) == []
    assert [t.device_num for t in e.check_silence(T0 + 3_600_000 + 31_000)] == [1]
