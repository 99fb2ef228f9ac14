"""What the GB/T 26875.3 gateway asks of the database: the UTDs by their protocol address,
and which of its events ingest has committed (its dead letters go through
store/deadletters.py like ingest's)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from devices.catalog import DeviceType

# The device attribute holding a UTD's GB/T 26875.3 address (the number its six address bytes
# stand for, low byte first, as the UTD's settings show it).
ADDRESS_ATTRIBUTE = "gb26875_address"


@dataclass(frozen=True, slots=True)
class Utd:
    """A registered transmission device the gateway may speak for."""

    id: str
    num: int
    unit_id: str


def utds_by_address(conn: psycopg.Connection[Any]) -> dict[int, Utd]:
    """Every registered UTD with an address, by that address (a clash: neither is taken)."""
    rows = conn.execute(
        "SELECT (attributes->>%s)::numeric, id, num, unit_id FROM devices"
        " WHERE type = %s AND attributes ? %s AND (attributes->>%s) ~ '^[0-9]{1,15}$'",
        (ADDRESS_ATTRIBUTE, str(DeviceType.UTD), ADDRESS_ATTRIBUTE, ADDRESS_ATTRIBUTE),
    ).fetchall()
    out: dict[int, Utd] = {}
    clashes: set[int] = set()
    for address, device_id, num, unit_id in rows:
        a = int(address)
        if a in out:
            clashes.add(a)
        out[a] = Utd(str(device_id), int(num), str(unit_id))
    for a in clashes:
        del out[a]
    return out


EventKey = tuple[int, dt.datetime, int]  # device_num, ts, seq: the events table's key


def committed(conn: psycopg.Connection[Any], keys: Sequence[EventKey]) -> set[EventKey]:
    """Which of these events are in the events table (committed by ingest)."""
    if not keys:
        return set()
    rows = conn.execute(
        "SELECT e.device_num, e.ts, e.seq FROM unnest(%s::int[], %s::timestamptz[],"
        " %s::bigint[]) AS k(n, t, s)"
        " JOIN events e ON e.device_num = k.n AND e.ts = k.t AND e.seq = k.s",
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    ).fetchall()
    return {(int(n), t, int(s)) for n, t, s in rows}
