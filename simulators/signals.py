"""Plausible signals of the four device types, as functions of (device seed, time).

Each model draws its devices' parameters once, as numpy arrays, from their seeds; `metrics`
then computes the readings of any devices at any timestamps in one vectorised pass. Nothing
depends on earlier calls, so a run is reproducible from its seed and a reading can be made for
any moment (a store-and-forward backlog, a test that jumps a day ahead).

Normal signals stay clear of the default rules' thresholds (rules/default_rules.yaml); the
fault scenarios (simulators/scenarios.py) push them across.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from devices.catalog import DeviceType
from simulators.noise import F64, I64, U64, between, id_unit, smooth, uniform, white

DAY_S = 86_400.0
_W = 2.0 * math.pi / DAY_S  # one turn a day
_LOCAL_S = 8 * 3600.0  # the fleet lives in UTC+8: load peaks by local hour
DEFAULT_TANK_DEPTH_M = 3.0


def tank_depth_m(device_id: str) -> float:
    """A fire tank's effective depth (2.5-4.5 m) from its id: the registry attribute and the
    simulator must agree without sharing state."""
    return round(2.5 + 2.0 * id_unit(device_id, "tank_depth"), 2)


def _smoothstep(x: F64) -> F64:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _peak_phase(hour: float, harmonic: int) -> float:
    """Phase that puts a sine of this harmonic of the day at its maximum at `hour` local time."""
    return harmonic * _W * hour * 3600.0 - math.pi / 2


def _lag(omega: float, tau: F64) -> tuple[F64, F64]:
    """Gain and phase delay of a first-order lag (time constant tau) for a sine of omega."""
    wt = omega * tau
    return 1.0 / np.sqrt(1.0 + wt * wt), np.arctan(wt)


class Model:
    """Base of the per-type models: the devices' seeds and which metrics each reports."""

    device_type: DeviceType

    def __init__(self, seeds: U64) -> None:
        self.seeds = np.asarray(seeds, np.uint64)
        self.n = int(self.seeds.size)
        names = self.metric_names()
        self.names: list[tuple[str, ...]] = [names] * self.n

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        """Every metric the model computes (a device may report a subset)."""
        return ()

    def metrics(self, rows: I64, t: F64, ts_ms: I64) -> dict[str, F64]:
        """Readings of devices `rows` at times t (epoch seconds; ts_ms the same in ms)."""
        return {}

    def _battery(self, s: U64, rows: I64, t: F64, low: float, cycle_days: F64) -> F64:
        # A battery drains over its cycle and is replaced: a sawtooth between 100 % and low.
        phase = np.mod(t / DAY_S + self._bat_off[rows], cycle_days) / cycle_days
        return np.round(100.0 - (100.0 - low) * phase)

    def _rssi(self, s: U64, rows: I64, t: F64) -> F64:
        return np.round(self._rssi_mean[rows] + 3.0 * smooth(s, t, 120.0, 9))

    def _common_params(self) -> None:
        self._rssi_mean = between(self.seeds, 90, -97.0, -58.0)
        self._bat_off = between(self.seeds, 91, 0.0, 365.0)


class ElectricalMonitor(Model):
    """Electrical fire monitor: load on a daily curve, cable temperatures lagging it.

    Load (fraction of the rated current) is the sum of a daily and a half-daily sine, shifted
    per device, plus smooth noise. Cable temperature is ambient plus a rise proportional to the
    square of the load passed through a first-order lag (time constant 15-40 min); for a sine
    the lag is exact (gain 1/sqrt(1 + (w tau)^2), delay atan(w tau)), so no state is needed.
    Residual current is a steady per-device baseline with a slow drift; voltage is ~220 V.
    """

    device_type = DeviceType.ELECTRICAL
    PHASES = ("a", "b", "c")

    def __init__(self, seeds: U64) -> None:
        super().__init__(seeds)
        s = self.seeds
        self.rated_a = np.round(between(s, 0, 30.0, 250.0))
        self.c0 = between(s, 1, 0.35, 0.5)
        self.a1 = between(s, 2, 0.15, 0.25)
        self.a2 = between(s, 3, 0.04, 0.09)
        self.shift_s = between(s, 4, -5400.0, 5400.0)
        self.tau_s = between(s, 5, 900.0, 2400.0)
        self.three_phase = between(s, 6, 0.0, 1.0) < 0.6
        self.channels = 1 + np.floor(between(s, 7, 0.0, 4.0)).astype(np.int64)
        self.rise_c = np.stack([between(s, 10 + c, 14.0, 28.0) for c in range(4)], axis=1)
        self.ambient_c = between(s, 14, 16.0, 30.0)
        self.rc_base = between(s, 15, 8.0, 90.0)
        self.rc_drift = self.rc_base * between(s, 16, 0.05, 0.2)
        self.rc_load = between(s, 17, 2.0, 10.0)
        self.v_offset = np.stack([between(s, 20 + p, -3.0, 3.0) for p in range(3)], axis=1)
        self.v_sag = between(s, 23, 2.0, 6.0)
        self.imbalance = np.stack([between(s, 24 + p, -0.08, 0.08) for p in range(3)], axis=1)
        self.g1, self.d1 = _lag(_W, self.tau_s)
        self.g2, self.d2 = _lag(2 * _W, self.tau_s)
        self._common_params()
        self.names = []
        for i in range(self.n):
            phases = self.PHASES if self.three_phase[i] else self.PHASES[:1]
            self.names.append(
                (
                    "residual_current_ma",
                    *(f"temp_c_{c + 1}" for c in range(int(self.channels[i]))),
                    *(f"voltage_v_{p}" for p in phases),
                    *(f"current_a_{p}" for p in phases),
                    "battery_pct",
                    "rssi_dbm",
                )
            )

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        """Every metric the model computes (a device may report a subset)."""
        return (
            "residual_current_ma",
            *(f"temp_c_{c}" for c in range(1, 5)),
            *(f"voltage_v_{p}" for p in cls.PHASES),
            *(f"current_a_{p}" for p in cls.PHASES),
            "battery_pct",
            "rssi_dbm",
        )

    def daily(self, rows: I64, t: F64, lag: bool = False) -> F64:
        """The daily load curve (fraction of rated current), or the same through the lag."""
        x = t + _LOCAL_S + self.shift_s[rows]
        a1, a2 = self.a1[rows], self.a2[rows]
        x1 = _W * x - _peak_phase(14.0, 1)
        x2 = 2 * _W * x - _peak_phase(19.0, 2)
        if lag:
            a1, a2 = a1 * self.g1[rows], a2 * self.g2[rows]
            x1, x2 = x1 - self.d1[rows], x2 - self.d2[rows]
        return self.c0[rows] + a1 * np.sin(x1) + a2 * np.sin(x2)

    def load(self, rows: I64, t: F64) -> tuple[F64, F64]:
        """Load: the daily curve plus smooth noise; and the lagged daily curve that heats the
        cables (a lag of 15-40 min filters most of the noise out, so it is left out there)."""
        load = self.daily(rows, t) + 0.05 * smooth(self.seeds[rows], t, 900.0, 1)
        lagged = self.daily(rows, t, lag=True)
        return np.minimum(np.maximum(load, 0.02), 1.0), np.minimum(np.maximum(lagged, 0.0), 1.0)

    def metrics(self, rows: I64, t: F64, ts_ms: I64) -> dict[str, F64]:
        """Readings of devices `rows` at times t (epoch seconds; ts_ms the same in ms)."""
        s = self.seeds[rows]
        load, lagged = self.load(rows, t)
        x = t + _LOCAL_S
        out: dict[str, F64] = {}
        rc = (
            self.rc_base[rows]
            + self.rc_drift[rows] * smooth(s, t, 4 * 3600.0, 2)
            + self.rc_load[rows] * load
            + 1.0 * white(s, ts_ms, 3)
        )
        rc = np.maximum(rc, 0.0).astype(np.float64)
        out["residual_current_ma"] = np.round(rc, 1)
        ambient = self.ambient_c[rows] + 3.0 * np.sin(_W * x - _peak_phase(15.0, 1))
        heat = lagged * lagged
        for c in range(4):
            temp = ambient + self.rise_c[rows, c] * heat + 0.2 * white(s, ts_ms, 10 + c)
            out[f"temp_c_{c + 1}"] = np.round(temp, 1)
        sag = self.v_sag[rows] * load
        for p, name in enumerate(self.PHASES):
            volts = (
                220.0
                + self.v_offset[rows, p]
                - sag
                + 1.2 * smooth(s, t, 60.0, 20 + p)
                + 0.4 * white(s, ts_ms, 20 + p)
            )
            out[f"voltage_v_{name}"] = np.round(volts, 1)
            amps = self.rated_a[rows] * load * (1.0 + self.imbalance[rows, p])
            amps = amps * (1.0 + 0.01 * white(s, ts_ms, 30 + p))
            out[f"current_a_{name}"] = np.round(amps, 1)
        # Mains powered with a backup battery: it barely moves.
        out["battery_pct"] = np.round(97.0 + 3.0 * smooth(s, t, DAY_S, 40))
        out["rssi_dbm"] = self._rssi(s, rows, t)
        return out


class WaterLevel(Model):
    """Fire-tank level: consumption draws it down slowly, a float valve refills it in minutes.

    Full is 95.5-98 % of the tank's depth; a cycle of 2-8 h lowers it by 2-4.5 % of the depth
    and refills in 5-15 min, so the level stays between ~93 % and 98 % (the rules alarm below
    85 % and above 100 %).
    """

    device_type = DeviceType.WATER_LEVEL

    def __init__(self, seeds: U64, depth_m: F64) -> None:
        super().__init__(seeds)
        s = self.seeds
        self.depth_m = np.asarray(depth_m, np.float64)
        self.full = self.depth_m * between(s, 0, 0.955, 0.98)
        self.drop = self.depth_m * between(s, 1, 0.02, 0.045)
        self.period_s = between(s, 2, 2 * 3600.0, 8 * 3600.0)
        self.refill_s = between(s, 3, 300.0, 900.0)
        self.offset_s = between(s, 4, 0.0, 1.0) * self.period_s
        self.battery_cycle_d = between(s, 5, 200.0, 500.0)
        self._common_params()

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        """Every metric the model computes."""
        return ("level_m", "battery_pct", "rssi_dbm")

    def metrics(self, rows: I64, t: F64, ts_ms: I64) -> dict[str, F64]:
        """Readings of devices `rows` at times t (epoch seconds; ts_ms the same in ms)."""
        s = self.seeds[rows]
        period, refill = self.period_s[rows], self.refill_s[rows]
        x = np.mod(t + self.offset_s[rows], period)
        draw = period - refill
        used = np.where(x < draw, x / draw, 1.0 - _smoothstep((x - draw) / refill))
        level = self.full[rows] - self.drop[rows] * used
        level = level + 0.003 * smooth(s, t, 20.0, 1) + 0.002 * white(s, ts_ms, 2)
        return {
            "level_m": np.round(level, 3),
            "battery_pct": self._battery(s, rows, t, 35.0, self.battery_cycle_d[rows]),
            "rssi_dbm": self._rssi(s, rows, t),
        }


class WaterPressure(Model):
    """Sprinkler/hydrant main pressure: a sawtooth kept up by the jockey pump.

    The main leaks down from ~0.35 to ~0.30 MPa over 3-15 min, then the jockey pump starts and
    brings it back up in 15-40 s. The fall is at most ~0.017 MPa/min, well under the 0.05
    MPa/min of the burst rule; the noise is smooth so that close readings do not look like a
    fall either. Values keep 5 decimals for the same reason.
    """

    device_type = DeviceType.WATER_PRESSURE

    def __init__(self, seeds: U64) -> None:
        super().__init__(seeds)
        s = self.seeds
        self.high = between(s, 0, 0.345, 0.355)
        self.low = between(s, 1, 0.295, 0.305)
        self.fall_s = between(s, 2, 180.0, 900.0)
        self.rise_s = between(s, 3, 15.0, 40.0)
        self.offset_s = between(s, 4, 0.0, 1000.0)
        self.battery_cycle_d = between(s, 5, 200.0, 500.0)
        self._common_params()

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        """Every metric the model computes."""
        return ("pressure_mpa", "battery_pct", "rssi_dbm")

    def metrics(self, rows: I64, t: F64, ts_ms: I64) -> dict[str, F64]:
        """Readings of devices `rows` at times t (epoch seconds; ts_ms the same in ms)."""
        s = self.seeds[rows]
        fall, rise = self.fall_s[rows], self.rise_s[rows]
        hi, lo = self.high[rows], self.low[rows]
        x = np.mod(t + self.offset_s[rows], fall + rise)
        falling = hi - (hi - lo) * x / fall
        rising = lo + (hi - lo) * _smoothstep((x - fall) / rise)
        p = np.where(x < fall, falling, rising) + 0.0008 * smooth(s, t, 20.0, 1)
        return {
            "pressure_mpa": np.round(p, 5),
            "battery_pct": self._battery(s, rows, t, 35.0, self.battery_cycle_d[rows]),
            "rssi_dbm": self._rssi(s, rows, t),
        }


# Events a healthy panel reports now and then, with their share; none of them opens an alert.
ROUTINE_EVENTS: tuple[tuple[str, float, str], ...] = (
    ("self_test", 0.6, "daily self test passed"),
    ("feedback", 0.2, "smoke exhaust fan feedback"),
    ("supervisory", 0.1, "sprinkler valve supervisory"),
    ("shield", 0.1, "detector shielded for maintenance"),
)


class TransmissionDevice(Model):
    """User information transmission device: heartbeats (telemetry with no metrics) and, about
    once an hour per device, a routine event (self test, feedback, supervisory, shield)."""

    device_type = DeviceType.UTD
    EVENT_EVERY_S = 3600.0

    def __init__(self, seeds: U64) -> None:
        super().__init__(seeds)
        self.loops = 1 + np.floor(between(self.seeds, 0, 0.0, 8.0)).astype(np.int64)

    def routine_event(
        self, rows: I64, ts_ms: I64, interval_s: float
    ) -> list[tuple[str, int, int, str] | None]:
        """For each message slot: a routine event (kind, loop, point, text) instead of a
        heartbeat, or None. Over time about one per EVENT_EVERY_S per device."""
        s = self.seeds[rows]
        chance = min(1.0, interval_s / self.EVENT_EVERY_S)
        u = uniform(s, ts_ms, 50)
        out: list[tuple[str, int, int, str] | None] = [None] * int(rows.size)
        hit = np.flatnonzero(u < chance)
        if hit.size == 0:
            return out
        pick = uniform(s[hit], ts_ms[hit], 51)
        points = 1 + np.floor(uniform(s[hit], ts_ms[hit], 52) * 200).astype(np.int64)
        loops = 1 + np.floor(uniform(s[hit], ts_ms[hit], 53) * self.loops[rows[hit]]).astype(
            np.int64
        )
        for h, p, lp, pt in zip(
            hit.tolist(), pick.tolist(), loops.tolist(), points.tolist(), strict=True
        ):
            acc = 0.0
            for kind, share, text in ROUTINE_EVENTS:
                acc += share
                if p < acc:
                    out[h] = (kind, lp, pt, text)
                    break
            else:
                out[h] = (ROUTINE_EVENTS[0][0], lp, pt, ROUTINE_EVENTS[0][2])
        return out


def models_for(
    types: list[DeviceType], seeds: list[int], depths: list[float]
) -> tuple[dict[DeviceType, Model], npt.NDArray[np.int64]]:
    """One model per device type for a list of devices, and each device's row in its model."""
    row = np.zeros(len(types), np.int64)
    models: dict[DeviceType, Model] = {}
    for typ in DeviceType:
        idx = [i for i, x in enumerate(types) if x is typ]
        if not idx:
            continue
        s = np.asarray([seeds[i] for i in idx], np.uint64)
        if typ is DeviceType.ELECTRICAL:
            models[typ] = ElectricalMonitor(s)
        elif typ is DeviceType.WATER_LEVEL:
            models[typ] = WaterLevel(s, np.asarray([depths[i] for i in idx]))
        elif typ is DeviceType.WATER_PRESSURE:
            models[typ] = WaterPressure(s)
        else:
            models[typ] = TransmissionDevice(s)
        row[idx] = np.arange(len(idx))
    return models, row
