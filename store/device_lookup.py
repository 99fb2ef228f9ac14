"""Registered devices by id: their type, and the tank depth a water-level device declares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """A registered device's type, and its `tank_depth_m` attribute as text (None: not set)."""

    id: str
    type: str
    tank_depth_m: str | None


def device_kinds(conn: psycopg.Connection[Any], device_ids: Sequence[str]) -> list[DeviceKind]:
    """The registered ones of these devices (ids not registered are left out)."""
    rows = conn.execute(
        "SELECT id, type, attributes->>'tank_depth_m' FROM devices WHERE id = ANY(%s)",
        (list(device_ids),),
    ).fetchall()
    return [DeviceKind(*r) for r in rows]
