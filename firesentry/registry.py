"""`firesentry devices import`: validate three CSV files, then upsert them in one transaction."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from devices.credentials import hash_many, new_password
from devices.records import (
    ID_PATTERN,
    ContactRecord,
    DeviceRecord,
    Parsed,
    RowError,
    UnitRecord,
    check_unique_ids,
    read_csv,
)
from store import registry as reg
from store.registry_import import Upserted, replace_contacts, upsert_devices, upsert_units

_ID = re.compile(ID_PATTERN)
CREDENTIALS_COLUMNS = ("device_id", "unit_id", "username", "password")


class ImportFailed(Exception):
    """The files were not imported; errors says where and why (nothing was changed)."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the input files")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import changed, and where the new devices' passwords were written."""

    units: Upserted
    devices: Upserted
    contacts: int
    new_credentials: int
    credentials_path: Path | None


def _check_units_known(
    conn: psycopg.Connection[Any],
    units: Parsed[UnitRecord],
    refs: list[tuple[str, int, str | None]],
    units_name: str,
) -> list[RowError]:
    """Errors for rows (file, row, unit_id) naming a unit in neither the units file nor the db."""
    in_file = {u.id for _, u in units.records}
    wanted = {u for _, _, u in refs if u and u not in in_file and _ID.match(u)}
    known = in_file | (reg.existing_units(conn, wanted) if wanted else set())
    return [
        RowError(name, row, "unit_id", f"unit {u!r} is neither in {units_name} nor in the database")
        for name, row, u in refs
        # A malformed id is reported by the row's own validation already.
        if u and u not in known and _ID.match(u)
    ]


def validate_files(
    conn: psycopg.Connection[Any],
    units_path: Path,
    devices_path: Path,
    contacts_path: Path | None = None,
) -> tuple[Parsed[UnitRecord], Parsed[DeviceRecord], Parsed[ContactRecord]]:
    """Read and check the files; raise ImportFailed with every problem found (db is only read)."""
    units_name, devices_name = str(units_path), str(devices_path)
    units = read_csv(units_path, UnitRecord, units_name)
    check_unique_ids(units, units_name)
    devices = read_csv(devices_path, DeviceRecord, devices_name)
    check_unique_ids(devices, devices_name)
    contacts: Parsed[ContactRecord] = Parsed()
    refs = [(devices_name, row, cells.get("unit_id")) for row, cells in devices.cells]
    if contacts_path is not None:
        contacts = read_csv(contacts_path, ContactRecord, str(contacts_path))
        refs += [(str(contacts_path), row, cells.get("unit_id")) for row, cells in contacts.cells]
    errors = units.errors + devices.errors + contacts.errors
    errors += _check_units_known(conn, units, refs, units_name)
    if errors:
        order = {units_name: 0, devices_name: 1, str(contacts_path): 2}
        errors.sort(key=lambda e: (order.get(e.file, 3), e.row or 0))
        raise ImportFailed(errors)
    return units, devices, contacts


def _write_credentials(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """Write passwords to a 0600 temporary file beside path; the caller renames it into place."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CREDENTIALS_COLUMNS)
        w.writerows(rows)
    return tmp


def import_files(
    dsn: str,
    units_path: Path,
    devices_path: Path,
    contacts_path: Path | None = None,
    *,
    credentials_out: Path = Path("credentials.csv"),
) -> ImportResult:
    """Validate the files, then upsert units, devices and contacts all together or not at all.

    Devices without an MQTT password (new ones) get one; the passwords go to credentials_out
    (mode 0600), which must not exist yet, and only their hashes to the database.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        units, devices, contacts = validate_files(conn, units_path, devices_path, contacts_path)
        device_ids = [d.id for _, d in devices.records]
        have = reg.devices_with_password(conn, device_ids)
        needs = [(d.id, d.unit_id) for _, d in devices.records if d.id not in have]
        if needs and credentials_out.exists():
            raise ImportFailed(
                [
                    RowError(
                        str(credentials_out),
                        None,
                        None,
                        f"exists; {len(needs)} new device password(s) would replace it. Move it "
                        "away or pass --credentials-out",
                    )
                ]
            )
        passwords = [new_password() for _ in needs]
        hashes = dict(zip((i for i, _ in needs), hash_many(passwords), strict=True))
        tmp: Path | None = None
        if needs:
            rows = [(i, u, i, p) for (i, u), p in zip(needs, passwords, strict=True)]
            tmp = _write_credentials(credentials_out, rows)
        try:
            with conn.transaction():
                u = upsert_units(conn, [r for _, r in units.records])
                d = upsert_devices(conn, [r for _, r in devices.records], hashes)
                c = replace_contacts(conn, [r for _, r in contacts.records])
        except BaseException:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise
        if tmp is not None:
            os.replace(tmp, credentials_out)
    return ImportResult(u, d, c, len(needs), credentials_out if needs else None)
