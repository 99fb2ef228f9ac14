"""Registry import on real PostgreSQL: all or nothing, upserts, passwords, liveness."""

from __future__ import annotations

import csv
import stat
import time
from pathlib import Path

import psycopg
import pytest

from devices.credentials import verify
from firesentry import registry as importer
from firesentry.embedded import Endpoints
from firesentry.registry import ImportFailed, import_files
from store import registry as reg
from tests.helpers import scalar

UNITS = (
    "id,name,address,district,grid,lat,lon,category\n"
    "u1,Riverside Mall,1 River Rd,Jinjiang,JJ-G1,30.657,104.081,high_rise\n"
    "u2,No. 3 Primary School,,Jinjiang,,30.642,104.095,school\n"
)
DEVICES = (
    "id,unit_id,type,model,location,attributes,heartbeat_s\n"
    "u1-em,u1,electrical_monitor,EM-100,B1 switch room,,60\n"
    'u1-wl,u1,water_level,WL-2,roof tank,"{""tank_depth_m"": 3.0}",300\n'
    "u2-utd,u2,user_transmission_device,,,,\n"
)
CONTACTS = (
    "unit_id,district,name,role,phone,email,locale,channels\n"
    "u1,,Wang Fang,fire_safety_manager,+86 138 0000 0001,wang@example.com,zh-CN,sms;wecom\n"
    "u2,,Li Wei,property_manager,+86 138 0000 0002,,zh-CN,sms\n"
    ",Jinjiang,Jinjiang control room,control_room,,ops@example.com,en,email\n"
)


def files(tmp_path: Path, units: str = UNITS, devices: str = DEVICES, contacts: str = CONTACTS):
    out = []
    for name, text in (("units.csv", units), ("devices.csv", devices), ("contacts.csv", contacts)):
        (tmp_path / name).write_text(text, encoding="utf-8")
        out.append(tmp_path / name)
    return out


def count(dsn: str, table: str) -> int:
    return int(scalar(dsn, f"SELECT count(*) FROM {table}"))  # noqa: S608


def read_credentials(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        return {r["device_id"]: r["password"] for r in csv.DictReader(f)}


def test_import_counts_and_credentials(db: Endpoints, tmp_path: Path) -> None:
    """Units, devices and contacts land; new devices' passwords go to a 0600 file, hashes to the db."""
    creds = tmp_path / "credentials.csv"
    res = import_files(db.dsn(), *files(tmp_path), credentials_out=creds)
    assert (res.units.inserted, res.devices.inserted, res.contacts) == (2, 3, 3)
    assert res.new_credentials == 3 and res.credentials_path == creds
    dsn = db.dsn()
    assert (count(dsn, "units"), count(dsn, "devices"), count(dsn, "contacts")) == (2, 3, 3)
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    passwords = read_credentials(creds)
    assert set(passwords) == {"u1-em", "u1-wl", "u2-utd"}
    with psycopg.connect(dsn) as conn:
        for dev_id, password in passwords.items():
            row = conn.execute("SELECT password_hash FROM devices WHERE id = %s", (dev_id,))
            hashed = row.fetchone()[0]  # type: ignore[index]
            assert hashed.startswith("$7$") and password not in hashed
            assert verify(password, hashed)
        wl = conn.execute("SELECT attributes, heartbeat_s FROM devices WHERE id = 'u1-wl'")
        assert wl.fetchone() == ({"tank_depth_m": 3.0}, 300)
        assert conn.execute(
            "SELECT channels FROM contacts WHERE name = 'Wang Fang'"
        ).fetchone() == (["sms", "wecom"],)


def test_errors_name_file_row_and_column_and_change_nothing(db: Endpoints, tmp_path: Path) -> None:
    """One bad row anywhere means nothing is written, and each problem says where it is."""
    bad_devices = DEVICES + "u2-wp,u9,water_pressure,,,,\nu1-em,u1,water_level,,,not json,\n"
    u, d, c = files(tmp_path, devices=bad_devices, contacts=CONTACTS + "u1,,X,chief,,,,\n")
    with pytest.raises(ImportFailed) as exc:
        import_files(db.dsn(), u, d, c, credentials_out=tmp_path / "creds.csv")
    got = [str(e) for e in exc.value.errors]
    assert got == [
        f"{d} row 5, column unit_id: unit 'u9' is neither in {u} nor in the database",
        f"{d} row 6, column attributes: not valid JSON (Expecting value at char 0)",
        f"{d} row 6, column id: duplicate id 'u1-em' (first at row 2)",
        f"{c} row 5, column role: Input should be 'fire_safety_manager', 'property_manager', "
        "'grid_worker', 'fire_supervisor' or 'control_room' (got 'chief')",
    ]
    assert (count(db.dsn(), "units"), count(db.dsn(), "devices")) == (0, 0)
    assert not (tmp_path / "creds.csv").exists()


def test_units_already_in_the_database_may_be_referenced(db: Endpoints, tmp_path: Path) -> None:
    """A device row may name a unit that only the database knows."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u9", "Old Plant")
    devices = "id,unit_id,type\nnew-1,u9,water_pressure\n"
    res = import_files(
        db.dsn(), *files(tmp_path, devices=devices)[:2], credentials_out=tmp_path / "c.csv"
    )
    assert res.devices.inserted == 1
    assert scalar(db.dsn(), "SELECT unit_id FROM devices WHERE id = 'new-1'") == "u9"


def test_failure_inside_the_transaction_changes_nothing(
    db: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the database step fails after units and devices were written, all of it rolls back."""

    def boom(*args: object) -> int:
        raise RuntimeError("contacts failed")

    monkeypatch.setattr(importer, "replace_contacts", boom)
    creds = tmp_path / "creds.csv"
    with pytest.raises(RuntimeError, match="contacts failed"):
        import_files(db.dsn(), *files(tmp_path), credentials_out=creds)
    assert (count(db.dsn(), "units"), count(db.dsn(), "devices")) == (0, 0)
    assert list(tmp_path.glob("*creds*")) == []


def test_reimport_updates_and_keeps_passwords(db: Endpoints, tmp_path: Path) -> None:
    """A second import updates changed rows, leaves the rest, and never rotates a password."""
    first = tmp_path / "first.csv"
    import_files(db.dsn(), *files(tmp_path), credentials_out=first)
    hash_before = scalar(db.dsn(), "SELECT password_hash FROM devices WHERE id = 'u1-em'")
    units = UNITS.replace("Riverside Mall", "Riverside Mall East")
    devices = DEVICES.replace("EM-100", "EM-200") + "u2-wl,u2,water_level,,,,\n"
    contacts = CONTACTS.replace("Li Wei", "Zhao Lei")
    second = tmp_path / "second.csv"
    res = import_files(db.dsn(), *files(tmp_path, units, devices, contacts), credentials_out=second)
    assert (res.units.inserted, res.units.updated, res.units.unchanged) == (0, 1, 1)
    assert (res.devices.inserted, res.devices.updated, res.devices.unchanged) == (1, 1, 2)
    assert read_credentials(second).keys() == {"u2-wl"}
    dsn = db.dsn()
    assert scalar(dsn, "SELECT name FROM units WHERE id = 'u1'") == "Riverside Mall East"
    assert scalar(dsn, "SELECT model FROM devices WHERE id = 'u1-em'") == "EM-200"
    assert scalar(dsn, "SELECT password_hash FROM devices WHERE id = 'u1-em'") == hash_before
    assert count(dsn, "contacts") == 3
    assert scalar(dsn, "SELECT count(*) FROM contacts WHERE name = 'Zhao Lei'") == 1
    again = import_files(
        db.dsn(), *files(tmp_path, units, devices, contacts), credentials_out=second
    )
    assert again.devices.unchanged == 4 and again.credentials_path is None


def test_existing_credentials_file_is_not_overwritten(db: Endpoints, tmp_path: Path) -> None:
    """New passwords never replace a credentials file that may hold undelivered ones."""
    creds = tmp_path / "credentials.csv"
    creds.write_text("keep me\n")
    with pytest.raises(ImportFailed, match="problem") as exc:
        import_files(db.dsn(), *files(tmp_path), credentials_out=creds)
    assert "exists; 3 new device password(s)" in str(exc.value.errors[0])
    assert creds.read_text() == "keep me\n" and count(db.dsn(), "devices") == 0


def test_liveness_is_computed_in_one_place(db: Endpoints, tmp_path: Path) -> None:
    """Offline when the status topic says so or after 3 silent heartbeats; unknown if never heard."""
    import_files(db.dsn(), *files(tmp_path), credentials_out=tmp_path / "c.csv")
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        # u1-em heard 100 s ago with a 60 s heartbeat: online; u1-wl 1000 s ago, 300 s: offline.
        conn.execute("UPDATE devices SET last_seen = now() - interval '100 s' WHERE id = 'u1-em'")
        conn.execute("UPDATE devices SET last_seen = now() - interval '1000 s' WHERE id = 'u1-wl'")
        statuses = {d.id: d.status for d in reg.list_devices(conn)}
        assert statuses == {"u1-em": "online", "u1-wl": "offline", "u2-utd": "unknown"}
        conn.execute("UPDATE devices SET status = 'offline', status_at = now() WHERE id = 'u1-em'")
        assert [d.id for d in reg.list_devices(conn, status="offline")] == ["u1-em", "u1-wl"]
        assert [d.id for d in reg.list_devices(conn, unit_id="u2")] == ["u2-utd"]
        shown = reg.get_device(conn, "u1-wl")
        assert shown is not None and shown.status == "offline" and shown.has_password
        assert shown.unit_name == "Riverside Mall" and shown.attributes == {"tank_depth_m": 3.0}
        assert reg.get_device(conn, "nope") is None


def test_import_of_20000_devices(db: Endpoints, tmp_path: Path) -> None:
    """A 20,000-device import (with a password each) completes and a second one changes
    nothing; the time is printed, not asserted. (100,000 took 16-29 s of both cores in the
    suite, most of it hashing passwords, and held the other worker up: the same paths at a
    fifth of the size keep `make test` under 10 minutes; `firesentry devices import` of
    100,000 is the README's figure.)"""
    n_units, n_devices = 200, 20_000
    types = ("electrical_monitor", "water_level", "water_pressure", "user_transmission_device")
    (tmp_path / "units.csv").write_text(
        "id,name,district\n" + "".join(f"u{i},Unit {i},D{i % 20}\n" for i in range(n_units))
    )
    (tmp_path / "devices.csv").write_text(
        "id,unit_id,type,model,location,attributes,heartbeat_s\n"
        + "".join(
            f'd{i},u{i % n_units},{types[i % 4]},M,L,"{{""k"": {i}}}",60\n'
            for i in range(n_devices)
        )
    )
    t0 = time.perf_counter()
    res = import_files(
        db.dsn(),
        tmp_path / "units.csv",
        tmp_path / "devices.csv",
        credentials_out=tmp_path / "creds.csv",
    )
    took = time.perf_counter() - t0
    print(f"\nimported {n_devices} devices and {n_units} units in {took:.2f} s")
    assert res.devices.inserted == n_devices and res.new_credentials == n_devices
    assert count(db.dsn(), "devices") == n_devices
    t0 = time.perf_counter()
    again = import_files(
        db.dsn(),
        tmp_path / "units.csv",
        tmp_path / "devices.csv",
        credentials_out=tmp_path / "creds2.csv",
    )
    print(f"re-imported them unchanged in {time.perf_counter() - t0:.2f} s")
    assert again.devices.unchanged == n_devices
