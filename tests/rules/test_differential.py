"""Differential tests: the vectorised engine and the reference evaluator agree on random input."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.catalog import EVENT_KIND_IDS, METRIC_BY_NAME, DeviceType, EventKind
from devices.registry import Device, Registry
from rules.engine import RuleEngine
from rules.model import RuleFile
from tests.rules.reference import Reference

RC = METRIC_BY_NAME["residual_current_ma"].id
LEVEL = METRIC_BY_NAME["level_m"].id
BASE = 1_767_225_600_000
REG = Registry.of(
    [
        Device(1, "em-1", "u", DeviceType.ELECTRICAL),
        Device(2, "em-2", "u", DeviceType.ELECTRICAL, {"limit": 6}),
        Device(3, "wl-1", "u", DeviceType.WATER_LEVEL),
        Device(4, "wl-2", "u", DeviceType.WATER_LEVEL, {"limit": 3}),
        Device(5, "utd-1", "u", DeviceType.UTD),
    ]
)
MSG = {"en": "x", "zh-CN": "y"}


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleFile:
    rules: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["above", "below", "outside", "rate"]))
        metric, dtype = draw(
            st.sampled_from(
                [("residual_current_ma", "electrical_monitor"), ("level_m", "water_level")]
            )
        )
        thr = draw(st.integers(1, 9))
        rule: dict[str, Any] = {
            "id": f"r{n}",
            "device_type": dtype,
            "kind": kind,
            "metric": metric,
            "severity": "major",
            "message": MSG,
        }
        if draw(st.booleans()):
            rule["for"] = draw(st.sampled_from([1, 2, 5]))
        if kind == "outside":
            rule["low"], rule["high"] = thr, thr + draw(st.integers(0, 3))
        elif kind == "rate":
            rule["threshold"] = thr / 2
            rule["per"] = "second"
            rule["window_s"] = draw(st.sampled_from([1, 3, 10]))
            rule["direction"] = draw(st.sampled_from(["falling", "rising", "either"]))
        else:
            rule["threshold"] = (
                {"attribute": "limit", "default": thr} if draw(st.booleans()) else thr
            )
            if draw(st.booleans()):
                rule["clear"] = thr - 1 if kind == "above" else thr + 1
        rules.append(rule)
    if draw(st.booleans()):
        rules.append(
            {
                "id": "fire",
                "device_type": "user_transmission_device",
                "kind": "event",
                "event": "fire_alarm",
                "severity": "critical",
                "message": MSG,
            }
        )
    return RuleFile.model_validate({"rules": rules})


reading = st.tuples(
    st.sampled_from([1, 2, 3, 4]),
    st.sampled_from([RC, LEVEL]),
    st.integers(0, 40).map(lambda s: BASE + s * 500),
    st.integers(0, 12).map(float),
)
event = st.tuples(
    st.just(5),
    st.sampled_from([EVENT_KIND_IDS[EventKind.FIRE_ALARM], EVENT_KIND_IDS[EventKind.RESET]]),
    st.integers(0, 40).map(lambda s: BASE + s * 500),
)
batches = st.lists(
    st.tuples(st.lists(reading, max_size=25), st.lists(event, max_size=4)), min_size=1, max_size=6
)


def run_engine(
    engine: RuleEngine, rows: list[tuple[int, int, int, float]], evs: list[tuple[int, int, int]]
) -> list[tuple[str, int, int, bool, float]]:
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    ecols: list[Any] = list(zip(*evs, strict=True)) if evs else [[], [], []]
    out = engine.evaluate(
        np.array(cols[0], np.int32),
        np.array(cols[1], np.int16),
        np.array(cols[2], np.int64),
        np.array(cols[3], np.float64),
        np.array(ecols[0], np.int32),
        np.array(ecols[1], np.int16),
        np.array(ecols[2], np.int64),
    )
    return [(t.rule.id, t.device_num, t.ts_ms, t.opened, t.value) for t in out]


def normal(ts: list[tuple[str, int, int, bool, float]]) -> list[tuple[str, int, int, bool, float]]:
    return sorted((r, d, t, o, round(v, 6)) for r, d, t, o, v in ts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_sets(), data=batches)
def test_engine_matches_reference(rules: RuleFile, data: list[Any]) -> None:
    """Random rules and random (late, duplicated, interleaved) batches give identical transitions."""
    engine = RuleEngine(rules, REG)
    ref = Reference(rules, REG)
    for rows, evs in data:
        assert normal(run_engine(engine, rows, evs)) == normal(ref.feed(rows, evs))


@settings(max_examples=100, deadline=None)
@given(rules=rule_sets(), data=batches)
def test_batch_boundaries_do_not_matter_for_ordered_streams(
    rules: RuleFile, data: list[Any]
) -> None:
    """A time-ordered stream gives the same transitions in one batch or in many."""
    stream = sorted((r for rows, _ in data for r in rows), key=lambda r: r[2])
    whole = RuleEngine(rules, REG)
    parts = RuleEngine(rules, REG)
    expected = run_engine(whole, stream, [])
    got: list[tuple[str, int, int, bool, float]] = []
    for k in range(0, len(stream), 7):
        got += run_engine(parts, stream[k : k + 7], [])
    assert normal(got) == normal(expected)
