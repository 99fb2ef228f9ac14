"""The per-type simulators: reproducible, valid for ingest, plausible, and quiet under the rules."""

from __future__ import annotations

import json

import numpy as np

from simulators.fleet import FleetSpec, Generator, Kind
from simulators.signals import ElectricalMonitor, WaterLevel, WaterPressure, tank_depth_m
from tests.simulators.util import T0, fleet, run


def _metrics(msgs: list) -> list[dict]:
    return [json.loads(m.payload).get("metrics") for m in msgs]


def test_same_seed_same_signals_other_seed_other_signals() -> None:
    """Two generators with one seed send identical payloads; another seed sends other values."""
    spec = FleetSpec(40)
    dev = np.arange(40)
    t = T0 + 3600.0 + dev * 0.25
    a = Generator(spec.ids(), spec.types(), seed=5).slots(dev, t)
    b = Generator(spec.ids(), spec.types(), seed=5).slots(dev, t)
    c = Generator(spec.ids(), spec.types(), seed=6).slots(dev, t)
    assert [m.payload for m in a] == [m.payload for m in b]
    metered = [i for i, m in enumerate(_metrics(a)) if m]
    assert sum(_metrics(a)[i] != _metrics(c)[i] for i in metered) == len(metered)


def test_a_reading_depends_only_on_seed_and_time() -> None:
    """A device's reading at a time is the same alone, in a batch, or after a jump in time."""
    gen, _ = fleet(12, seed=9)
    t = T0 + 86_400 * 3 + 17.0
    batch = _metrics(gen.slots(np.arange(12), np.full(12, t)))
    gen.slots(np.arange(12), np.full(12, t + 5 * 86_400))  # later first: no state involved
    for i in (0, 1, 2, 5):
        alone = _metrics(gen.slots(np.asarray([i]), np.asarray([t])))[0]
        assert alone == batch[i]


def test_two_days_of_readings_are_valid_plausible_and_raise_no_alert() -> None:
    """Two days of a 40-device fleet decode without a rejection, stay in plausible ranges,
    and open no default rule (every 5 min for two days, every 2 s for an hour)."""
    gen, registry = fleet(40, seed=3, interval_s=300.0)
    slow = run(gen, registry, T0 + np.arange(0, 2 * 86_400, 300.0))
    gen, registry = fleet(40, seed=3, interval_s=2.0)
    fast = run(gen, registry, T0 + 7 * 3600 + np.arange(0, 3600, 2.0))
    for r in (slow, fast):
        assert r.rejections == []
        assert r.opened() == set()
    v = {k: np.asarray(x) for k, x in slow.values.items()}
    assert v["residual_current_ma"].min() > 0 and v["residual_current_ma"].max() < 200
    for name in ("temp_c_1", "temp_c_2", "temp_c_3", "temp_c_4"):
        assert v[name].min() > 5 and v[name].max() < 65
    for name in ("voltage_v_a", "voltage_v_b", "voltage_v_c"):
        assert v[name].min() > 205 and v[name].max() < 235
    assert v["pressure_mpa"].min() > 0.28 and v["pressure_mpa"].max() < 0.37
    assert v["battery_pct"].min() >= 30
    assert v["rssi_dbm"].min() > -120 and v["rssi_dbm"].max() < -40
    # Every UTD heartbeat is telemetry without metrics; now and then a routine event.
    utd = [m for m in slow.messages if m.topic.endswith("-utd/telemetry")]
    assert utd and all(json.loads(m.payload)["metrics"] == {} for m in utd)
    kinds = {json.loads(m.payload)["kind"] for m in slow.messages if m.kind is Kind.EVENT}
    assert "self_test" in kinds and kinds <= {"self_test", "feedback", "supervisory", "shield"}


def test_load_follows_a_daily_curve_and_cable_temperature_lags_it() -> None:
    """Load peaks in the local afternoon/evening; the lagged load behind the cable temperature
    is the load through a first-order lag (checked against Euler integration)."""
    em = ElectricalMonitor(np.asarray([11, 12, 13], np.uint64))
    step = 10.0
    t = T0 + np.arange(0, 3 * 86_400, step)
    for row in range(3):
        rows = np.full(t.size, row)
        load, lagged = em.load(rows, t)
        daily = em.daily(rows, t)
        assert np.abs(load - np.clip(daily, 0.02, 1.0)).max() <= 0.05 + 1e-9  # + smooth noise
        # Integrate dy/dt = (daily - y) / tau from the analytic value one day in.
        tau = float(em.tau_s[row])
        start = int(86_400 / step)
        y = np.empty(t.size - start)
        y[0] = lagged[start]
        for k in range(1, y.size):
            y[k] = y[k - 1] + (daily[start + k - 1] - y[k - 1]) * step / tau
        assert np.abs(y - lagged[start:]).max() < 0.003
        hour = ((t - T0 + 8 * 3600 + em.shift_s[row]) % 86_400) / 3600
        day = slice(0, int(86_400 / step))
        assert 10 <= hour[day][np.argmax(load[day])] <= 21  # business hours, local time
        assert load[day].min() < 0.6 * load[day].max()
        lag_h = (np.argmax(lagged[day]) - np.argmax(daily[day])) * step / 3600
        assert 0.1 < lag_h % 24 < 3


def test_tank_level_cycles_and_pressure_sawtooth() -> None:
    """The tank is drawn down slowly and refilled in minutes, staying near full; the main's
    pressure is kept between ~0.30 and ~0.35 MPa by jockey-pump cycles."""
    ids = ["a-wl", "b-wl", "c-wl"]
    depth = np.asarray([tank_depth_m(i) for i in ids])
    wl = WaterLevel(np.asarray([1, 2, 3], np.uint64), depth)
    t = T0 + np.arange(0, 86_400, 60.0)
    ts = (t * 1000).astype(np.int64)
    for row in range(3):
        level = wl.metrics(np.full(t.size, row), t, ts)["level_m"] / depth[row]
        assert level.min() > 0.9 and level.max() < 0.99
        refills = np.flatnonzero(np.diff(level) > 0.003)  # minutes in which it rose
        assert refills.size >= 2
    wp = WaterPressure(np.asarray([4, 5, 6], np.uint64))
    t = T0 + np.arange(0, 3600, 1.0)
    ts = (t * 1000).astype(np.int64)
    for row in range(3):
        p = wp.metrics(np.full(t.size, row), t, ts)["pressure_mpa"]
        assert 0.29 < p.min() < 0.31 and 0.34 < p.max() < 0.36
        rising = np.diff(p) > 0.0005  # the jockey pump runs
        starts = np.flatnonzero(rising[1:] & ~rising[:-1])
        assert starts.size >= 3  # several times an hour
        per_min = p[60:] - p[:-60]  # change over a minute
        assert per_min.min() > -0.05  # a normal fall never looks like a burst
