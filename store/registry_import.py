"""Bulk registry upserts: COPY into a temporary table, then one INSERT ... ON CONFLICT per table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from devices.records import ContactRecord, DeviceRecord, UnitRecord


@dataclass(frozen=True, slots=True)
class Upserted:
    """How many rows of a table were new, changed, or already as given."""

    inserted: int
    updated: int
    unchanged: int


def _upsert(
    conn: psycopg.Connection[Any],
    stage: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    target: str,
    update_sql: str,
    changed_sql: str,
) -> Upserted:
    cols = ", ".join(columns)
    defs = ", ".join(f"{c} {t}" for c, t in zip(columns, types, strict=True))
    conn.execute(f"CREATE TEMP TABLE {stage} ({defs}) ON COMMIT DROP")
    with conn.cursor() as cur, cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(r)
    # Unchanged rows are skipped by the WHERE so that a re-import does not rewrite them all;
    # xmax = 0 tells a fresh insert from an update.
    row = conn.execute(
        f"WITH done AS (INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {stage}"  # noqa: S608
        f" ON CONFLICT (id) DO UPDATE SET {update_sql} WHERE {changed_sql}"
        " RETURNING (t.xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM done"
    ).fetchone()
    assert row is not None
    inserted, updated = int(row[0]), int(row[1])
    return Upserted(inserted, updated, len(rows) - inserted - updated)


def upsert_units(conn: psycopg.Connection[Any], units: Sequence[UnitRecord]) -> Upserted:
    """Insert new units and update the changed ones (must run inside a transaction)."""
    columns = (
        "id",
        "name",
        "address",
        "district",
        "grid",
        "lat",
        "lon",
        "category",
        "public_fields",
        "public_contact",
    )
    types = ("text", "text", "text", "text", "text", "float8", "float8", "text", "text[]", "text")
    data = [
        (
            u.id,
            u.name,
            u.address,
            u.district,
            u.grid,
            u.lat,
            u.lon,
            str(u.category),
            sorted(set(u.public)),
            u.public_contact,
        )
        for u in units
    ]
    rest = columns[1:]
    return _upsert(
        conn,
        "import_units",
        columns,
        types,
        data,
        "units",
        ", ".join(f"{c} = EXCLUDED.{c}" for c in rest),
        f"({', '.join('t.' + c for c in rest)}) IS DISTINCT FROM"
        f" ({', '.join('EXCLUDED.' + c for c in rest)})",
    )


def upsert_devices(
    conn: psycopg.Connection[Any],
    devices: Sequence[DeviceRecord],
    new_hashes: Mapping[str, str],
) -> Upserted:
    """Insert new devices and update changed ones; a device keeps its password hash if it has one.

    new_hashes holds a hash for each device that has no password yet (new or never given one).
    Must run inside a transaction.
    """
    columns = ("id", "unit_id", "type", "model", "location", "attributes", "heartbeat_s")
    types = ("text", "text", "text", "text", "text", "jsonb", "integer", "text")
    data = [
        (
            d.id,
            d.unit_id,
            str(d.type),
            d.model,
            d.location,
            json.dumps(d.attributes, ensure_ascii=False),
            d.heartbeat_s,
            new_hashes.get(d.id),
        )
        for d in devices
    ]
    rest = columns[1:]
    return _upsert(
        conn,
        "import_devices",
        (*columns, "password_hash"),
        types,
        data,
        "devices",
        ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
        + ", password_hash = coalesce(t.password_hash, EXCLUDED.password_hash)",
        f"({', '.join('t.' + c for c in rest)}) IS DISTINCT FROM"
        f" ({', '.join('EXCLUDED.' + c for c in rest)}) OR t.password_hash IS NULL",
    )


def replace_contacts(conn: psycopg.Connection[Any], contacts: Sequence[ContactRecord]) -> int:
    """Make the given contacts the whole contact list of each unit (and district) they name.

    Contacts have no natural key, so the file is authoritative for the units and districts it
    mentions; others keep theirs. Must run inside a transaction.
    """
    units = sorted({c.unit_id for c in contacts if c.unit_id})
    districts = sorted({c.district for c in contacts if not c.unit_id and c.district})
    conn.execute(
        "DELETE FROM contacts WHERE unit_id = ANY(%s) OR (unit_id IS NULL AND district = ANY(%s))",
        (units, districts),
    )
    cols = "unit_id, district, name, role, phone, email, locale, channels"
    with conn.cursor() as cur, cur.copy(f"COPY contacts ({cols}) FROM STDIN") as copy:
        for c in contacts:
            copy.write_row(
                (c.unit_id, c.district, c.name, c.role, c.phone, c.email, c.locale, c.channels)
            )
    return len(contacts)
