"""The in-memory view of registered devices that ingest and the rule engine index by number."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from devices.catalog import DeviceType

# Most devices override no threshold: they share one read-only empty mapping (a city's
# 100,000 devices spent 6 MB on empty dicts).
NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device as ingest needs it."""

    num: int
    id: str
    unit_id: str
    type: DeviceType
    attributes: Mapping[str, Any] = field(default_factory=lambda: NO_ATTRIBUTES)
    heartbeat_s: int = 60
    unit_name: str = ""
    district: str = ""
    location: str = ""  # where it is in the unit ("B1 pump room"), said in every message
    unit_address: str = ""


@dataclass(frozen=True, slots=True)
class Registry:
    """Devices by MQTT id and by dense number (index into rule-state arrays)."""

    by_id: dict[str, Device]
    by_num: dict[int, Device]
    max_num: int

    @classmethod
    def of(cls, devices: list[Device]) -> Registry:
        """Build the lookup tables from a list of devices."""
        return cls(
            by_id={d.id: d for d in devices},
            by_num={d.num: d for d in devices},
            max_num=max((d.num for d in devices), default=0),
        )
