"""Named fault scenarios: what a faulty device does from its onset on.

A scenario changes a device's readings (`alter`, vectorised over readings, given the seconds
since onset `tau`), adds events at fixed times after onset (`events`), or changes how the
device talks to the broker (`link`: dropped connection, store-and-forward gaps, garbage).
Times are compressed so that a run of a minute shows the whole story; every parameter can be
changed (the demo uses steps instead of ramps).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt

from devices.catalog import DeviceType
from simulators.noise import F64

Link = Literal["offline", "flaky", "malformed"]
_METERED = frozenset({DeviceType.ELECTRICAL, DeviceType.WATER_LEVEL, DeviceType.WATER_PRESSURE})


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """An event a scenario makes the device report, `at_s` seconds after onset."""

    at_s: float
    kind: str
    text: str = ""
    loop: int | None = None
    point: int | None = None


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Base: a scenario that does nothing. end_s (after onset) returns the device to normal."""

    name: ClassVar[str] = "none"
    types: ClassVar[frozenset[DeviceType]] = frozenset(DeviceType)
    rules: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = "no fault: every device behaves"
    link: ClassVar[Link | None] = None
    end_s: float | None = None

    def active(self, tau: F64) -> npt.NDArray[np.bool_]:
        """Mask of readings inside the scenario (onset reached, end not yet)."""
        on = tau >= 0.0
        if self.end_s is not None:
            on &= tau < self.end_s
        return on

    def alter(self, device_type: DeviceType, m: dict[str, F64], tau: F64) -> None:
        """Change readings in place; tau holds the seconds since onset of each reading."""

    def events(self) -> tuple[ScheduledEvent, ...]:
        """Events to report, relative to onset."""
        return ()

    def link_down(self, tau: float) -> bool:
        """Whether the device's link is down at tau (offline and flaky scenarios)."""
        return False


def _ramp(tau: F64, span_s: float) -> F64:
    if span_s <= 0:
        return (tau >= 0).astype(np.float64)
    return np.clip(tau / span_s, 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class LeakageRising(Scenario):
    """Insulation failing: residual current ramps from its baseline to peak_ma over ramp_s."""

    name: ClassVar[str] = "leakage_rising"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.ELECTRICAL})
    rules: ClassVar[tuple[str, ...]] = ("residual_current_high",)
    summary: ClassVar[str] = "residual current ramps past 300 mA"
    ramp_s: float = 30.0
    peak_ma: float = 480.0

    def alter(self, device_type: DeviceType, m: dict[str, F64], tau: F64) -> None:
        """Raise residual_current_ma toward peak_ma."""
        on = self.active(tau)
        rc = m["residual_current_ma"]
        ramped = rc + (self.peak_ma - rc) * _ramp(tau, self.ramp_s)
        m["residual_current_ma"] = np.where(on, np.round(ramped, 1), rc)


@dataclass(frozen=True, kw_only=True)
class CableOverheating(Scenario):
    """An overloaded circuit: phase a carries `overload` times its current and cable channel 1
    heats toward peak_c with time constant tau_s."""

    name: ClassVar[str] = "cable_overheating"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.ELECTRICAL})
    rules: ClassVar[tuple[str, ...]] = ("cable_temp_high_1",)
    summary: ClassVar[str] = "cable channel 1 heats past 70 °C (phase a overloaded)"
    tau_s: float = 20.0
    peak_c: float = 105.0
    overload: float = 1.6

    def alter(self, device_type: DeviceType, m: dict[str, F64], tau: F64) -> None:
        """Heat temp_c_1 and raise current_a_a."""
        on = self.active(tau)
        temp = m["temp_c_1"]
        heat = 1.0 - np.exp(-np.clip(tau, 0.0, None) / max(self.tau_s, 1e-9))
        m["temp_c_1"] = np.where(on, np.round(temp + (self.peak_c - temp) * heat, 1), temp)
        amps = m["current_a_a"]
        m["current_a_a"] = np.where(on, np.round(amps * self.overload, 1), amps)


@dataclass(frozen=True, kw_only=True)
class ArcFault(Scenario):
    """An arc fault event at onset, reset after hold_s."""

    name: ClassVar[str] = "arc_fault"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.ELECTRICAL})
    rules: ClassVar[tuple[str, ...]] = ("arc_fault",)
    summary: ClassVar[str] = "arc_fault event, reset after 30 s"
    hold_s: float = 30.0

    def events(self) -> tuple[ScheduledEvent, ...]:
        """arc_fault at onset, reset at hold_s."""
        return (
            ScheduledEvent(0.0, "arc_fault", "series arc on circuit 1", loop=1, point=1),
            ScheduledEvent(self.hold_s, "reset", "arc fault cleared"),
        )


@dataclass(frozen=True, kw_only=True)
class TankDraining(Scenario):
    """A leaking or drawn-off fire tank: the level falls to floor_frac of normal over drain_s."""

    name: ClassVar[str] = "tank_draining"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.WATER_LEVEL})
    rules: ClassVar[tuple[str, ...]] = ("tank_level_low", "tank_level_critical")
    summary: ClassVar[str] = "tank level falls below 85 %, then 50 % of its depth"
    drain_s: float = 60.0
    floor_frac: float = 0.05

    def alter(self, device_type: DeviceType, m: dict[str, F64], tau: F64) -> None:
        """Lower level_m."""
        on = self.active(tau)
        level = m["level_m"]
        drained = level * (1.0 - (1.0 - self.floor_frac) * _ramp(tau, self.drain_s))
        m["level_m"] = np.where(on, np.round(drained, 3), level)


@dataclass(frozen=True, kw_only=True)
class PipeBurst(Scenario):
    """A burst main: pressure decays toward floor_mpa with time constant tau_s."""

    name: ClassVar[str] = "pipe_burst"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.WATER_PRESSURE})
    rules: ClassVar[tuple[str, ...]] = ("pressure_falling_fast", "pressure_low")
    summary: ClassVar[str] = "pressure falls > 0.05 MPa/min, then below 0.10 MPa"
    tau_s: float = 20.0
    floor_mpa: float = 0.02

    def alter(self, device_type: DeviceType, m: dict[str, F64], tau: F64) -> None:
        """Lower pressure_mpa."""
        on = self.active(tau)
        p = m["pressure_mpa"]
        left = np.exp(-np.maximum(tau, 0.0) / self.tau_s) if self.tau_s > 0 else np.zeros_like(p)
        fallen = self.floor_mpa + (p - self.floor_mpa) * left
        m["pressure_mpa"] = np.where(on, np.round(fallen, 5), p)


@dataclass(frozen=True, kw_only=True)
class FalseFireAlarm(Scenario):
    """A detector alarms (dust, steam), the panel is reset after hold_s; the operator closes
    the alert as a false alarm (`firesentry alerts close ID --verify false_alarm`)."""

    name: ClassVar[str] = "false_fire_alarm"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.UTD})
    rules: ClassVar[tuple[str, ...]] = ("fire_alarm",)
    summary: ClassVar[str] = "fire_alarm event, reset after 20 s; verify as false alarm"
    hold_s: float = 20.0

    def events(self) -> tuple[ScheduledEvent, ...]:
        """fire_alarm at onset, reset at hold_s."""
        return (
            ScheduledEvent(0.0, "fire_alarm", "3F corridor smoke detector", loop=2, point=31),
            ScheduledEvent(self.hold_s, "reset", "panel reset"),
        )


@dataclass(frozen=True, kw_only=True)
class SpreadingFire(Scenario):
    """A real fire: one detector alarms, then a second on the same loop (smoke reaching the
    next room) spread_s later, then a third on the floor above; the panel is reset at hold_s.
    Each detector is its own alert; the second and third say the fire is spreading."""

    name: ClassVar[str] = "spreading_fire"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.UTD})
    rules: ClassVar[tuple[str, ...]] = ("fire_alarm",)
    summary: ClassVar[str] = "fire_alarm at three detectors 10 s apart, reset after 60 s"
    spread_s: float = 10.0
    hold_s: float = 60.0

    def events(self) -> tuple[ScheduledEvent, ...]:
        """Three detectors, spread_s apart, then the reset."""
        return (
            ScheduledEvent(0.0, "fire_alarm", "2F kitchen smoke detector", loop=1, point=12),
            ScheduledEvent(self.spread_s, "fire_alarm", "2F dining hall smoke detector", 1, 13),
            ScheduledEvent(2 * self.spread_s, "fire_alarm", "3F corridor smoke detector", 2, 5),
            ScheduledEvent(self.hold_s, "reset", "panel reset"),
        )


@dataclass(frozen=True, kw_only=True)
class PanelFault(Scenario):
    """A detector reports a fault (dirty chamber, a broken loop), the panel is reset after
    hold_s once it is repaired."""

    name: ClassVar[str] = "panel_fault"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.UTD})
    rules: ClassVar[tuple[str, ...]] = ("panel_fault",)
    summary: ClassVar[str] = "fault at a detector, reset after 30 s"
    hold_s: float = 30.0

    def events(self) -> tuple[ScheduledEvent, ...]:
        """fault at onset, reset at hold_s."""
        return (
            ScheduledEvent(0.0, "fault", "B1 pump room smoke detector", loop=3, point=8),
            ScheduledEvent(self.hold_s, "reset", "panel reset"),
        )


@dataclass(frozen=True, kw_only=True)
class PowerFaults(Scenario):
    """The panel's mains fails, then its battery runs low; both come back by hold_s."""

    name: ClassVar[str] = "power_faults"
    types: ClassVar[frozenset[DeviceType]] = frozenset({DeviceType.UTD})
    rules: ClassVar[tuple[str, ...]] = ("main_power_fault", "backup_power_fault")
    summary: ClassVar[str] = "main power fault, backup power fault 10 s later, reset at 40 s"
    backup_after_s: float = 10.0
    hold_s: float = 40.0

    def events(self) -> tuple[ScheduledEvent, ...]:
        """Mains, then battery, then the reset."""
        return (
            ScheduledEvent(0.0, "main_power_fault", "main power lost"),
            ScheduledEvent(self.backup_after_s, "backup_power_fault", "battery low"),
            ScheduledEvent(self.hold_s, "reset", "panel reset"),
        )


@dataclass(frozen=True, kw_only=True)
class OfflineAndBack(Scenario):
    """The device loses its connection without DISCONNECT (the broker publishes its will,
    `offline`, on the retained status topic), stays away gap_s, then reconnects and
    publishes `online`. What it measured meanwhile is lost."""

    name: ClassVar[str] = "offline_and_back"
    rules: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = "connection dropped (will: offline), back online after 15 s"
    link: ClassVar[Link | None] = "offline"
    gap_s: float = 15.0

    def link_down(self, tau: float) -> bool:
        """Down from onset for gap_s."""
        return 0.0 <= tau < self.gap_s


@dataclass(frozen=True, kw_only=True)
class FlakyLink(Scenario):
    """Store-and-forward: the link is down gap_s of every period_s; readings taken meanwhile
    are sent when it is back, as one `readings[]` batch, out of order."""

    name: ClassVar[str] = "flaky_link"
    types: ClassVar[frozenset[DeviceType]] = _METERED
    summary: ClassVar[str] = "8 s gaps every 20 s, backlog sent as a shuffled readings[] batch"
    link: ClassVar[Link | None] = "flaky"
    gap_s: float = 8.0
    period_s: float = 20.0

    def link_down(self, tau: float) -> bool:
        """Down gap_s out of every period_s from onset."""
        if tau < 0 or (self.end_s is not None and tau >= self.end_s):
            return False
        return (tau % self.period_s) < self.gap_s


@dataclass(frozen=True, kw_only=True)
class Malformed(Scenario):
    """Broken firmware: about `share` of the device's messages are garbage (not JSON, cut off,
    unknown metric, seconds for milliseconds, out of range, far future, wrong event kind)."""

    name: ClassVar[str] = "malformed"
    summary: ClassVar[str] = "half of the messages are garbage (→ rejected_messages)"
    link: ClassVar[Link | None] = "malformed"
    share: float = 0.5
    # Which garbage: every variant the decoder must reject, see simulators/fleet.py.
    variants: tuple[int, ...] = field(default=(0, 1, 2, 3, 4, 5, 6, 7))


SCENARIOS: dict[str, type[Scenario]] = {
    s.name: s
    for s in (
        LeakageRising,
        CableOverheating,
        ArcFault,
        TankDraining,
        PipeBurst,
        FalseFireAlarm,
        SpreadingFire,
        PanelFault,
        PowerFaults,
        OfflineAndBack,
        FlakyLink,
        Malformed,
    )
}


def make(name: str, **params: float) -> Scenario:
    """The scenario called name with its default parameters, changed by params."""
    try:
        cls = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None
    known = {f.name for f in fields(cls)}
    for key in params:
        if key not in known:
            raise ValueError(
                f"scenario {name} has no parameter {key!r}; it has {', '.join(sorted(known))}"
            )
    return replace(cls(), **params)


def parse(spec: str) -> Scenario:
    """A scenario from `name` or `name:key=value,key=value` (e.g. `flaky_link:gap_s=2`)."""
    name, _, rest = spec.partition(":")
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            params[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"scenario {spec!r}: expected key=number, got {item!r}") from None
    return make(name.strip(), **params)
