"""The vectorised threshold engine: edges of above/below/outside/event rules and carried state."""

from __future__ import annotations

import numpy as np
import pytest

from devices.catalog import EVENT_KIND_IDS, METRIC_BY_NAME, DeviceType, EventKind
from devices.registry import Device, Registry
from rules.engine import RuleEngine
from rules.loader import RuleFileError, load_rules, parse_rules

RC = METRIC_BY_NAME["residual_current_ma"].id
LEVEL = METRIC_BY_NAME["level_m"].id
REG = Registry.of(
    [
        Device(1, "em-1", "u1", DeviceType.ELECTRICAL),
        Device(2, "em-2", "u1", DeviceType.ELECTRICAL, {"residual_current_limit_ma": 500}),
        Device(3, "wl-1", "u1", DeviceType.WATER_LEVEL, {"tank_depth_m": 4.0}),
        Device(4, "utd-1", "u1", DeviceType.UTD),
    ]
)


def run(
    engine: RuleEngine, rows: list[tuple[int, int, int, float]]
) -> list[tuple[str, int, int, bool]]:
    dev, met, ts, val = (np.array(c) for c in zip(*rows, strict=True))
    out = engine.evaluate(
        dev.astype(np.int32), met.astype(np.int16), ts.astype(np.int64), val.astype(np.float64)
    )
    return [(t.rule.id, t.device_num, t.ts_ms, t.opened) for t in out]


@pytest.fixture()
def engine() -> RuleEngine:
    return RuleEngine(load_rules(), REG)


def test_exactly_at_threshold_opens(engine: RuleEngine) -> None:
    """'above' means >=: 300 mA on a 300 mA limit opens the alert."""
    assert run(engine, [(1, RC, 1, 300.0)]) == [("residual_current_high", 1, 1, True)]


def test_attribute_overrides_default_threshold(engine: RuleEngine) -> None:
    """A device attribute raises its own limit; the same value opens nothing there."""
    assert run(engine, [(2, RC, 1, 400.0), (1, RC, 1, 400.0)]) == [
        ("residual_current_high", 1, 1, True)
    ]


def test_hysteresis_clears_only_below_clear_level(engine: RuleEngine) -> None:
    """Once open, 280 mA (under 300, above the 270 clear level) keeps it open; 260 clears."""
    rows = [(1, RC, 1, 350.0), (1, RC, 2, 280.0), (1, RC, 3, 290.0), (1, RC, 4, 260.0)]
    assert run(engine, rows) == [
        ("residual_current_high", 1, 1, True),
        ("residual_current_high", 1, 4, False),
    ]


def test_breach_that_clears_and_returns_in_one_batch(engine: RuleEngine) -> None:
    """Open, clear and open again inside one batch are three transitions, in time order."""
    rows = [(1, RC, 30, 310.0), (1, RC, 10, 310.0), (1, RC, 20, 100.0)]
    assert [t[2:] for t in run(engine, rows)] == [(10, True), (20, False), (30, True)]


def test_state_carries_across_batches_and_steady_breach_is_silent(engine: RuleEngine) -> None:
    """A breach that continues in the next batch produces no new transition."""
    assert len(run(engine, [(1, RC, 1, 400.0)])) == 1
    assert run(engine, [(1, RC, 2, 410.0), (1, RC, 3, 420.0)]) == []


def test_late_reading_does_not_reopen_the_past(engine: RuleEngine) -> None:
    """A store-and-forward reading older than the state is stored but not evaluated."""
    run(engine, [(1, RC, 100, 50.0)])
    assert run(engine, [(1, RC, 50, 999.0)]) == []


def test_factor_threshold_and_two_levels(engine: RuleEngine) -> None:
    """Tank below 85 % of a 4 m depth is major; below 50 % also opens the critical rule."""
    out = run(engine, [(3, LEVEL, 1, 3.3), (3, LEVEL, 2, 1.9)])
    assert out == [("tank_level_low", 3, 1, True), ("tank_level_critical", 3, 2, True)]


def test_interleaved_devices_are_independent(engine: RuleEngine) -> None:
    """Readings of many devices interleaved give each device its own sequence."""
    rows = [(1, RC, 1, 400.0), (2, RC, 1, 600.0), (1, RC, 2, 100.0), (2, RC, 2, 550.0)]
    assert run(engine, rows) == [
        ("residual_current_high", 1, 1, True),
        ("residual_current_high", 2, 1, True),
        ("residual_current_high", 1, 2, False),
    ]


def test_fire_alarm_event_opens_and_reset_clears(engine: RuleEngine) -> None:
    """A fire_alarm event opens the critical rule; a reset event clears it."""
    empty_i, empty_f = np.empty(0, np.int32), np.empty(0, np.float64)
    ev = np.array([4, 4], np.int32)
    kinds = np.array(
        [EVENT_KIND_IDS[EventKind.FIRE_ALARM], EVENT_KIND_IDS[EventKind.RESET]], np.int16
    )
    out = engine.evaluate(
        empty_i,
        np.empty(0, np.int16),
        np.empty(0, np.int64),
        empty_f,
        ev,
        kinds,
        np.array([5, 9], np.int64),
    )
    assert [(t.rule.id, t.ts_ms, t.opened) for t in out] == [
        ("fire_alarm", 5, True),
        ("fire_alarm", 9, False),
    ]


def test_default_rules_cover_all_four_device_types() -> None:
    """The shipped rule file has rules for every device type."""
    types = {r.device_type for r in load_rules().rules if r.device_type is not None}
    assert types == set(DeviceType)
    kinds = {r.kind for r in load_rules().rules}
    assert kinds == {"above", "below", "outside", "event", "rate", "deadman"}


def test_bad_rule_file_names_rule_field_and_reason() -> None:
    """Errors in a rule file name the file, the rule id, the field and the reason."""
    text = """
rules:
  - id: hot
    device_type: electrical_monitor
    kind: above
    metric: level_m
    threshold: 5
    severity: major
    message: {en: x, zh-CN: y}
  - id: cold
    device_type: water_level
    kind: below
    metric: level_m
    severity: loud
    threshold: 1
    message: {en: x, zh-CN: y}
"""
    with pytest.raises(RuleFileError) as exc:
        parse_rules(text, "my_rules.yaml")
    msg = str(exc.value)
    assert msg.startswith("my_rules.yaml: invalid rule file")
    assert (
        "rule hot: (rule): Value error, metric level_m is not reported by electrical_monitor" in msg
    )
    assert "rule cold: severity: Input should be 'critical', 'major', 'warning' or 'info'" in msg
