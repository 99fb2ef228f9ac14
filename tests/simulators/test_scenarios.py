"""Fault scenarios: each crosses the threshold of its rule; link scenarios change the traffic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from devices.catalog import DeviceType
from simulators.demo_fleet import SimDevice, demo_scenario
from simulators.fleet import MAX_BATCH_BYTES, Assignment, FleetSpec, Kind
from simulators.run import SimError, pick_faulty
from simulators.scenarios import SCENARIOS, FlakyLink, Malformed, OfflineAndBack, make, parse
from tests.simulators.util import T0, fleet, run

ONSET = T0 + 30.0
RULED = [name for name, cls in SCENARIOS.items() if cls.rules]


def test_every_scenario_has_a_rule_or_a_link_effect() -> None:
    """The nine scenarios of the design, a spreading fire, a panel fault and power faults
    (the UTD scenarios the GB/T 26875.3 simulator sends too), each with rules to open or a
    link behaviour."""
    assert set(SCENARIOS) == {
        "leakage_rising",
        "cable_overheating",
        "arc_fault",
        "tank_draining",
        "pipe_burst",
        "false_fire_alarm",
        "spreading_fire",
        "panel_fault",
        "power_faults",
        "offline_and_back",
        "flaky_link",
        "malformed",
    }
    for cls in SCENARIOS.values():
        assert cls.rules or cls.link is not None


@pytest.mark.parametrize("name", RULED)
def test_scenario_opens_its_rules_after_onset_and_nothing_else(name: str) -> None:
    """Fed through ingest's decoder and the default rules, the faulty device opens exactly the
    scenario's rules, after its onset; the healthy devices open none."""
    sc = make(name)
    gen, registry = fleet(8, seed=2, interval_s=2.0)
    target = next(i for i in range(8) if gen.types[i] in sc.types)
    gen.assignments = {target: Assignment(sc, ONSET)}
    r = run(gen, registry, T0 + np.arange(0, 150, 2.0))
    assert r.rejections == []
    assert r.opened() == set(sc.rules)
    assert r.opened(target + 1) == set(sc.rules)
    first = min(t.ts_ms for t in r.transitions if t.opened)
    assert first >= ONSET * 1000


@pytest.mark.parametrize("name", ["arc_fault", "false_fire_alarm"])
def test_event_scenarios_reset_after_their_hold(name: str) -> None:
    """An arc fault or a false fire alarm is followed by a reset that clears the rule."""
    sc = make(name, hold_s=20.0)
    gen, registry = fleet(4, interval_s=2.0)
    target = next(i for i in range(4) if gen.types[i] in sc.types)
    gen.assignments = {target: Assignment(sc, ONSET)}
    r = run(gen, registry, T0 + np.arange(0, 80, 2.0))
    (opened,) = [t for t in r.transitions if t.opened]
    (cleared,) = [t for t in r.transitions if not t.opened]
    assert opened.rule.id == cleared.rule.id == sc.rules[0]
    assert cleared.ts_ms - opened.ts_ms == 20_000


def test_a_spreading_fire_is_one_transition_per_detector() -> None:
    """Three detectors alarm 10 s apart: three opened transitions, each naming its point, and
    the reset clears the device."""
    sc = make("spreading_fire")
    gen, registry = fleet(4, interval_s=2.0)
    target = next(i for i in range(4) if gen.types[i] in sc.types)
    gen.assignments = {target: Assignment(sc, ONSET)}
    r = run(gen, registry, T0 + np.arange(0, 120, 2.0))
    opened = [t for t in r.transitions if t.opened]
    assert [t.point_key for t in opened] == ["1-12", "1-13", "2-5"]
    assert [t.point.text for t in opened if t.point] == [
        "2F kitchen smoke detector",
        "2F dining hall smoke detector",
        "3F corridor smoke detector",
    ]
    (cleared,) = [t for t in r.transitions if not t.opened]
    assert cleared.ts_ms - opened[0].ts_ms == 60_000 and cleared.point is None


@pytest.mark.parametrize("typ", list(DeviceType))
def test_demo_scenarios_step_at_fault_time_and_recover(typ: DeviceType) -> None:
    """The demo's scenarios cross their threshold at the first reading after the fault time
    and clear after the recovery time."""
    gen, registry = fleet(4, interval_s=2.0, depths={})  # the demo's tanks are 3.0 m deep
    i = [t for t in gen.types].index(typ)
    sc = demo_scenario(SimDevice(gen.ids[i], typ, 6.0, 46.0))
    assert sc is not None
    gen.assignments = {i: Assignment(sc, T0 + 6.0)}
    r = run(gen, registry, T0 + np.arange(0, 60, 2.0) + 0.01, per_batch=1)
    opened = [t for t in r.transitions if t.opened and t.device_num == i + 1]
    assert opened and min(t.ts_ms for t in opened) < (T0 + 8.1) * 1000
    main_rule = sc.rules[-1] if typ is not DeviceType.WATER_LEVEL else "tank_level_low"
    assert any(t.rule.id == main_rule and not t.opened for t in r.transitions)


def test_malformed_messages_are_all_rejected_and_only_they() -> None:
    """A malformed device's garbage (every variant) is rejected by the decoder, its good
    messages and everyone else's are not."""
    gen, registry = fleet(8, seed=4, interval_s=1.0)
    gen.assignments = {0: Assignment(Malformed(), ONSET), 3: Assignment(Malformed(), ONSET)}
    r = run(gen, registry, T0 + np.arange(0, 200, 1.0))
    bad = [m for m in r.messages if m.kind is Kind.MALFORMED]
    assert 100 < len(bad) < 300  # about half of 2 x 170 messages after onset
    assert {m.dev for m in bad} == {0, 3}
    assert len(r.rejections) == len(bad)
    assert {x.reason for x in r.rejections} == {
        "malformed",
        "unknown_metric",
        "bad_timestamp",
        "out_of_range",
        "future_timestamp",
        "unknown_event",
    }
    good = [m for m in r.messages if m.dev in (0, 3) and m.kind is not Kind.MALFORMED]
    assert len(good) > 100  # the other half went through (and was not rejected, see above)


def test_flaky_link_sends_its_backlog_as_shuffled_readings_batches() -> None:
    """During a gap nothing is sent; afterwards the backlog comes as one readings[] batch, out
    of order, and every reading taken arrives exactly once."""
    gen, registry = fleet(4, interval_s=1.0)
    gen.assignments = {1: Assignment(FlakyLink(gap_s=8.0, period_s=20.0), ONSET)}
    times = T0 + np.arange(0, 100, 1.0)
    r = run(gen, registry, times, devices=[1])
    assert r.rejections == [] and r.opened() == set()
    batches = [m for m in r.messages if m.kind is Kind.READINGS]
    assert len(batches) == 4  # gaps of 8 s from 30, 50, 70 and 90 s
    single = [m for m in r.messages if m.kind is Kind.TELEMETRY]
    assert [m.readings for m in batches] == [9] * 4  # 8 held + the one of the slot it came back
    assert len(single) + sum(m.readings for m in batches) == len(times)
    ts = [r["ts"] for r in json.loads(batches[0].payload)["readings"]]
    assert len(ts) == 9 and ts != sorted(ts) and len(set(ts)) == 9
    assert r.values and len(r.values["level_m"]) == len(single) + sum(m.readings for m in batches)


def test_a_long_backlog_is_split_under_the_payload_limit() -> None:
    """Ten minutes of a monitor's readings go out as several batches, each well under 64 KiB."""
    gen, registry = fleet(1, interval_s=1.0)
    gen.assignments = {0: Assignment(FlakyLink(gap_s=600.0, period_s=1200.0), ONSET)}
    r = run(gen, registry, ONSET + np.arange(0, 601, 1.0), devices=[0], per_batch=700)
    batches = [m for m in r.messages if m.kind is Kind.READINGS]
    assert len(batches) >= 3
    assert all(len(m.payload) <= MAX_BATCH_BYTES for m in batches)
    assert sum(m.readings for m in batches) == 601
    assert r.rejections == []


def test_offline_and_back_drops_the_link_then_announces_itself() -> None:
    """The device drops its connection at onset, sends nothing for the gap, then reconnects
    and publishes a retained `online` before its next reading."""
    gen, registry = fleet(4, interval_s=1.0)
    gen.assignments = {2: Assignment(OfflineAndBack(gap_s=10.0), ONSET)}
    r = run(gen, registry, T0 + np.arange(0, 60, 1.0), devices=[2], per_batch=1)
    kinds = [m.kind for m in r.messages]
    drop = kinds.index(Kind.DROP)
    assert kinds[:drop] == [Kind.TELEMETRY] * 30
    assert kinds[drop + 1 : drop + 4] == [Kind.RECONNECT, Kind.STATUS, Kind.TELEMETRY]
    status = r.messages[drop + 2]
    assert status.payload == b"online" and status.retain and status.topic.endswith("/status")
    assert len(kinds) - 3 == 60 - 10  # ten seconds of readings lost


def test_faulty_devices_are_picked_by_count_or_share_reproducibly() -> None:
    """--faulty takes a count or a share of the eligible devices; scenarios never share a
    device; the pick depends on the seed only."""
    spec = FleetSpec(40)
    a = pick_faulty(spec, ("leakage_rising", "malformed"), "3", seed=1)
    assert pick_faulty(spec, ("leakage_rising", "malformed"), "3", seed=1) == a
    assert sorted(sc.name for sc in a.values()) == ["leakage_rising"] * 3 + ["malformed"] * 3
    assert all(spec.device_type(i) is DeviceType.ELECTRICAL for i, sc in a.items() if sc.rules)
    b = pick_faulty(spec, ("tank_draining",), "50%", seed=1)
    assert len(b) == 5  # half of the 10 tanks
    assert pick_faulty(spec, ("tank_draining",), "50%", seed=2) != b
    with pytest.raises(SimError):
        pick_faulty(spec, ("tank_draining",), "lots", seed=1)


def test_scenario_parameters_from_text() -> None:
    """`name:key=value,...` changes a scenario's parameters; unknown names and keys are refused."""
    sc = parse("flaky_link:gap_s=2,period_s=5")
    assert isinstance(sc, FlakyLink) and (sc.gap_s, sc.period_s) == (2.0, 5.0)
    with pytest.raises(ValueError, match="no parameter"):
        parse("flaky_link:gap=2")
    with pytest.raises(ValueError, match="unknown scenario"):
        parse("earthquake")
