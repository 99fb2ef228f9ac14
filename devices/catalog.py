"""The device types, their metrics and event kinds: the vocabulary of the MQTT contract."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeviceType(StrEnum):
    """The four kinds of field device firesentry understands."""

    UTD = "user_transmission_device"
    ELECTRICAL = "electrical_monitor"
    WATER_LEVEL = "water_level"
    WATER_PRESSURE = "water_pressure"


@dataclass(frozen=True, slots=True)
class Metric:
    """One measured quantity: stable id (stored in telemetry), unit and the sensor's range."""

    id: int
    name: str
    unit: str
    low: float
    high: float
    device_types: frozenset[DeviceType]


_ALL = frozenset(DeviceType)
_EM = frozenset({DeviceType.ELECTRICAL})

# Ids are stored in the database: append new metrics, never renumber.
# Ranges are what a sensor can physically report; outside them a reading is a fault, not a value.
METRICS: tuple[Metric, ...] = (
    Metric(1, "battery_pct", "%", 0.0, 100.0, _ALL),
    Metric(2, "rssi_dbm", "dBm", -140.0, 0.0, _ALL),
    Metric(3, "residual_current_ma", "mA", 0.0, 3000.0, _EM),
    Metric(4, "temp_c_1", "°C", -40.0, 250.0, _EM),
    Metric(5, "temp_c_2", "°C", -40.0, 250.0, _EM),
    Metric(6, "temp_c_3", "°C", -40.0, 250.0, _EM),
    Metric(7, "temp_c_4", "°C", -40.0, 250.0, _EM),
    Metric(8, "voltage_v_a", "V", 0.0, 500.0, _EM),
    Metric(9, "voltage_v_b", "V", 0.0, 500.0, _EM),
    Metric(10, "voltage_v_c", "V", 0.0, 500.0, _EM),
    Metric(11, "current_a_a", "A", 0.0, 2000.0, _EM),
    Metric(12, "current_a_b", "A", 0.0, 2000.0, _EM),
    Metric(13, "current_a_c", "A", 0.0, 2000.0, _EM),
    Metric(14, "level_m", "m", 0.0, 30.0, frozenset({DeviceType.WATER_LEVEL})),
    Metric(15, "pressure_mpa", "MPa", 0.0, 4.0, frozenset({DeviceType.WATER_PRESSURE})),
)

METRIC_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
MAX_METRIC_ID = max(m.id for m in METRICS)


class EventKind(StrEnum):
    """Event kinds a user information transmission device (or a monitor, for arc) reports."""

    FIRE_ALARM = "fire_alarm"
    FAULT = "fault"
    SUPERVISORY = "supervisory"
    SHIELD = "shield"
    START = "start"
    FEEDBACK = "feedback"
    MAIN_POWER_FAULT = "main_power_fault"
    BACKUP_POWER_FAULT = "backup_power_fault"
    RESET = "reset"
    SELF_TEST = "self_test"
    ARC_FAULT = "arc_fault"


# Stable ids, stored in the events table.
EVENT_KIND_IDS: dict[EventKind, int] = {k: i + 1 for i, k in enumerate(EventKind)}
EVENT_KIND_BY_ID: dict[int, EventKind] = {v: k for k, v in EVENT_KIND_IDS.items()}

EVENT_KINDS_BY_TYPE: dict[DeviceType, frozenset[EventKind]] = {
    DeviceType.UTD: frozenset(EventKind) - {EventKind.ARC_FAULT},
    DeviceType.ELECTRICAL: frozenset({EventKind.ARC_FAULT, EventKind.FAULT, EventKind.RESET}),
    DeviceType.WATER_LEVEL: frozenset({EventKind.FAULT, EventKind.RESET}),
    DeviceType.WATER_PRESSURE: frozenset({EventKind.FAULT, EventKind.RESET}),
}


def metrics_for(device_type: DeviceType) -> list[Metric]:
    """Return the metrics a device of this type may report."""
    return [m for m in METRICS if device_type in m.device_types]
