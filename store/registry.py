"""Registry queries: load devices for ingest, add units/devices/contacts, liveness, passwords."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from devices.catalog import DeviceType
from devices.registry import NO_ATTRIBUTES, Device, Registry
from store.pg_arrays import array_params

if TYPE_CHECKING:  # numpy only for the types: the outbox process imports this module
    import numpy as np
    import numpy.typing as npt


def load_registry(conn: psycopg.Connection[Any]) -> Registry:
    """Read every device with its unit's name, district and address."""
    cur = conn.execute(
        "SELECT d.num, d.id, d.unit_id, d.type, d.attributes, d.heartbeat_s, u.name, u.district,"
        " d.location, u.address FROM devices d JOIN units u ON u.id = d.unit_id"
    )
    # A unit's ten devices share its strings instead of holding ten copies each, and rows are
    # turned into devices one at a time: with 100,000 devices the registry took 48 MB, and
    # 40 MB more while all rows were held as tuples.
    shared: dict[str, str] = {}

    def one(s: str | None) -> str:
        return shared.setdefault(s or "", s or "")

    return Registry.of(
        [
            Device(
                int(r[0]),
                str(r[1]),
                one(r[2]),
                DeviceType(r[3]),
                dict(r[4]) if r[4] else NO_ATTRIBUTES,
                int(r[5]),
                one(r[6]),
                one(r[7]),
                one(r[8]),
                one(r[9]),
            )
            for r in cur
        ]
    )


def registry_version(conn: psycopg.Connection[Any]) -> int:
    """A number that changes whenever what load_registry reads changes (migration 0013)."""
    row = conn.execute("SELECT version FROM registry_version").fetchone()
    return int(row[0]) if row else 0


def add_unit(
    conn: psycopg.Connection[Any],
    unit_id: str,
    name: str,
    *,
    address: str = "",
    district: str = "",
    grid: str = "",
    lat: float | None = None,
    lon: float | None = None,
    category: str = "small_venue",
) -> None:
    """Insert or update a unit."""
    conn.execute(
        "INSERT INTO units (id, name, address, district, grid, lat, lon, category)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, address = EXCLUDED.address,"
        " district = EXCLUDED.district, grid = EXCLUDED.grid, lat = EXCLUDED.lat,"
        " lon = EXCLUDED.lon, category = EXCLUDED.category",
        (unit_id, name, address, district, grid, lat, lon, category),
    )


def add_device(
    conn: psycopg.Connection[Any],
    device_id: str,
    unit_id: str,
    device_type: DeviceType,
    *,
    model: str = "",
    location: str = "",
    attributes: dict[str, Any] | None = None,
    heartbeat_s: int = 60,
) -> int:
    """Insert or update a device; return its internal number."""
    row = conn.execute(
        "INSERT INTO devices (id, unit_id, type, model, location, attributes, heartbeat_s)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET unit_id = EXCLUDED.unit_id, type = EXCLUDED.type,"
        " model = EXCLUDED.model, location = EXCLUDED.location, attributes = EXCLUDED.attributes,"
        " heartbeat_s = EXCLUDED.heartbeat_s RETURNING num",
        (
            device_id,
            unit_id,
            str(device_type),
            model,
            location,
            Jsonb(attributes or {}),
            heartbeat_s,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_contact(
    conn: psycopg.Connection[Any],
    name: str,
    role: str,
    *,
    unit_id: str | None = None,
    district: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    locale: str = "zh-CN",
    channels: Iterable[str] = (),
) -> int:
    """Insert a contact of a unit (or of a whole district); return its id."""
    row = conn.execute(
        "INSERT INTO contacts (unit_id, district, name, role, phone, email, locale, channels)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (unit_id, district, name, role, phone, email, locale, list(channels)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def touch_last_seen(
    conn: psycopg.Connection[Any],
    nums: Sequence[int] | npt.NDArray[np.integer[Any]],
    seen_ms: Sequence[int] | npt.NDArray[np.integer[Any]],
    heard_ms: Sequence[int] | npt.NDArray[np.integer[Any]] | None = None,
) -> None:
    """Advance devices.last_seen (epoch ms per device number); never moves it back.

    A device reported offline turns online only for a message heard (received, `heard_ms`;
    default its last_seen) after the offline report and taken after it (by the device's
    clock): last_seen is flushed seconds late, and telemetry comes in a session of its own, so
    a reading sent before the device's will, still queued behind a backlog, is heard after it;
    it must not undo the will. (A device whose clock is behind says `online` on its status
    topic when it reconnects.) Times go as epoch ms, converted by PostgreSQL: a city's flush
    is 100,000 devices, which as Python datetimes cost ~10 MB and most of the flush's time."""
    if len(nums) == 0:
        return
    heard = seen_ms if heard_ms is None else heard_ms
    cols = [c.tolist() if hasattr(c, "tolist") else c for c in (nums, seen_ms, heard)]
    conn.execute(_TOUCH_LAST_SEEN, array_params(_TOUCH_LAST_SEEN, cols))


_TOUCH_LAST_SEEN = (
    "UPDATE devices d SET last_seen = greatest(d.last_seen, to_timestamp(v.ms / 1000.0)),"
    " status = CASE WHEN d.status = 'offline'"
    " AND (d.status_at IS NULL OR (to_timestamp(v.heard / 1000.0) > d.status_at"
    " AND to_timestamp(v.ms / 1000.0) > d.status_at))"
    " THEN 'online' ELSE d.status END"
    " FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) AS v(num, ms, heard)"
    " WHERE d.num = v.num"
)


def set_status(conn: psycopg.Connection[Any], statuses: dict[int, tuple[str, int]]) -> None:
    """Record online/offline from the devices' status topic."""
    for num, (status, at_ms) in statuses.items():
        conn.execute(
            "UPDATE devices SET status = %s, status_at = %s WHERE num = %s",
            (status, dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC), num),
        )


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device with its unit's name and its computed liveness (the device_liveness view)."""

    num: int
    id: str
    unit_id: str
    unit_name: str
    type: str
    model: str
    location: str
    attributes: dict[str, Any]
    heartbeat_s: int
    last_seen: dt.datetime | None
    reported_status: str
    status_at: dt.datetime | None
    has_password: bool
    created_at: dt.datetime
    status: str


_VIEW_COLUMNS = ", ".join(DeviceView.__dataclass_fields__)


def list_devices(
    conn: psycopg.Connection[Any], *, unit_id: str | None = None, status: str | None = None
) -> list[DeviceView]:
    """Devices ordered by id, optionally of one unit and/or with one computed status."""
    rows = conn.execute(
        f"SELECT {_VIEW_COLUMNS} FROM device_liveness"  # noqa: S608 (fixed column list)
        " WHERE (%(unit)s::text IS NULL OR unit_id = %(unit)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s) ORDER BY id",
        {"unit": unit_id, "status": status},
    ).fetchall()
    return [DeviceView(*r) for r in rows]


def get_device(conn: psycopg.Connection[Any], device_id: str) -> DeviceView | None:
    """One device with its computed status, or None."""
    row = conn.execute(
        f"SELECT {_VIEW_COLUMNS} FROM device_liveness WHERE id = %s",  # noqa: S608
        (device_id,),
    ).fetchone()
    return DeviceView(*row) if row else None


def unit_exists(conn: psycopg.Connection[Any], unit_id: str) -> bool:
    """Tell whether a unit is registered."""
    return conn.execute("SELECT 1 FROM units WHERE id = %s", (unit_id,)).fetchone() is not None


def existing_units(conn: psycopg.Connection[Any], unit_ids: Iterable[str]) -> set[str]:
    """The subset of unit_ids that are registered."""
    rows = conn.execute("SELECT id FROM units WHERE id = ANY(%s)", (list(unit_ids),)).fetchall()
    return {str(r[0]) for r in rows}


def devices_with_password(conn: psycopg.Connection[Any], device_ids: Iterable[str]) -> set[str]:
    """The subset of device_ids that are registered and already have an MQTT password."""
    rows = conn.execute(
        "SELECT id FROM devices WHERE id = ANY(%s) AND password_hash IS NOT NULL",
        (list(device_ids),),
    ).fetchall()
    return {str(r[0]) for r in rows}


def set_password_hash(conn: psycopg.Connection[Any], device_id: str, password_hash: str) -> bool:
    """Replace a device's MQTT password hash; False when there is no such device."""
    cur = conn.execute(
        "UPDATE devices SET password_hash = %s WHERE id = %s", (password_hash, device_id)
    )
    return cur.rowcount == 1


def password_hashes(conn: psycopg.Connection[Any]) -> tuple[list[tuple[str, str]], int]:
    """(device id, hash) of every device with a password, and how many have none."""
    rows = conn.execute(
        "SELECT id, password_hash FROM devices WHERE password_hash IS NOT NULL ORDER BY id"
    ).fetchall()
    missing = conn.execute("SELECT count(*) FROM devices WHERE password_hash IS NULL").fetchone()
    return [(str(r[0]), str(r[1])) for r in rows], int(missing[0]) if missing else 0


def create_device(
    conn: psycopg.Connection[Any],
    device_id: str,
    unit_id: str,
    device_type: DeviceType,
    *,
    password_hash: str,
    model: str = "",
    location: str = "",
    attributes: dict[str, Any] | None = None,
    heartbeat_s: int = 60,
) -> int | None:
    """Insert a new device with its MQTT password hash; None when the id is taken."""
    row = conn.execute(
        "INSERT INTO devices (id, unit_id, type, model, location, attributes, heartbeat_s,"
        " password_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING RETURNING num",
        (
            device_id,
            unit_id,
            str(device_type),
            model,
            location,
            Jsonb(attributes or {}),
            heartbeat_s,
            password_hash,
        ),
    ).fetchone()
    return int(row[0]) if row else None
