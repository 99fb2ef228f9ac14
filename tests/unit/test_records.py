"""CSV validation of registry records: every problem is found and named by file, row and column."""

from __future__ import annotations

from pathlib import Path

from devices.catalog import DeviceType
from devices.records import (
    Category,
    ContactRecord,
    DeviceRecord,
    UnitRecord,
    check_unique_ids,
    read_csv,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_rows_become_typed_records(tmp_path: Path) -> None:
    """Empty optional cells take defaults; attributes are JSON objects, channels split on ';'."""
    units = read_csv(
        write(
            tmp_path / "u.csv",
            "id,name,address,district,grid,lat,lon,category\n"
            "u1,Riverside Mall,1 River Rd,Jinjiang,G1,30.65,104.08,high_rise\n"
            "u2,Plant,,,,,,\n",
        ),
        UnitRecord,
    )
    assert units.errors == []
    assert [(row, u.id) for row, u in units.records] == [(2, "u1"), (3, "u2")]
    assert units.records[0][1].category is Category.HIGH_RISE
    assert units.records[1][1].lat is None and units.records[1][1].category is Category.SMALL_VENUE
    devices = read_csv(
        write(
            tmp_path / "d.csv",
            "id,unit_id,type,model,location,attributes,heartbeat_s\n"
            'wl-1,u1,water_level,WL,roof,"{""tank_depth_m"": 3.0}",300\n'
            "em-1,u1,electrical_monitor,,,,\n",
        ),
        DeviceRecord,
    )
    assert devices.errors == []
    wl, em = (d for _, d in devices.records)
    assert wl.type is DeviceType.WATER_LEVEL and wl.attributes == {"tank_depth_m": 3.0}
    assert wl.heartbeat_s == 300 and em.heartbeat_s == 60 and em.attributes == {}
    contacts = read_csv(
        write(
            tmp_path / "c.csv",
            "unit_id,district,name,role,phone,email,locale,channels\n"
            "u1,,Wang Fang,fire_safety_manager,+86 138 0000 0001,w@example.com,zh-CN,sms; wecom\n"
            ",Jinjiang,Control room,control_room,,,en,\n",
        ),
        ContactRecord,
    )
    assert contacts.errors == []
    assert contacts.records[0][1].channels == ["sms", "wecom"]
    assert contacts.records[1][1].unit_id is None and contacts.records[1][1].district == "Jinjiang"


def test_every_error_names_file_row_and_column(tmp_path: Path) -> None:
    """All bad cells of all rows are reported, not just the first, each with its row and column."""
    path = write(
        tmp_path / "devices.csv",
        "id,unit_id,type,model,location,attributes,heartbeat_s\n"
        "ok-1,u1,water_level,,,,\n"
        'bad id,u1,fridge,,,"{""a"": ",0\n'
        "ok-2,,water_level,,,[1],x\n",
    )
    parsed = read_csv(path, DeviceRecord, "devices.csv")
    got = {(e.row, e.column) for e in parsed.errors}
    assert got == {
        (3, "id"),
        (3, "type"),
        (3, "attributes"),
        (3, "heartbeat_s"),
        (4, "unit_id"),
        (4, "attributes"),
        (4, "heartbeat_s"),
    }
    text = [str(e) for e in parsed.errors]
    assert "devices.csv row 3, column type: Input should be" in text[1]
    assert any("row 4, column unit_id: required" in t for t in text)
    assert [row for row, _ in parsed.records] == [2]


def test_header_problems_stop_the_file(tmp_path: Path) -> None:
    """An unknown or missing column is reported on row 1 and the rows are not read."""
    parsed = read_csv(write(tmp_path / "u.csv", "id,nam,colour\nu1,x,y\n"), UnitRecord, "u.csv")
    assert {(e.row, e.column, e.message.split(";")[0]) for e in parsed.errors} == {
        (1, "nam", "unknown column"),
        (1, "colour", "unknown column"),
        (1, "name", "missing column"),
    }
    assert parsed.records == []


def test_missing_file_bom_and_multiline_rows(tmp_path: Path) -> None:
    """A missing file is one error; a byte-order mark is ignored; rows are numbered by first line."""
    assert [str(e) for e in read_csv(tmp_path / "nope.csv", UnitRecord).errors] == [
        f"{tmp_path / 'nope.csv'}: file not found"
    ]
    path = tmp_path / "u.csv"
    path.write_bytes(
        '\ufeffid,name,address\nu1,A,"two\nlines"\nu 2,B,\n'.encode(),
    )
    parsed = read_csv(path, UnitRecord, "u.csv")
    assert [str(e) for e in parsed.errors] == [
        "u.csv row 4, column id: 'u 2' is not an id (1-64 of A-Z a-z 0-9 _ . -)"
    ]
    assert parsed.records[0][1].address == "two\nlines"


def test_contact_rules_and_duplicate_ids(tmp_path: Path) -> None:
    """A contact needs a unit or a district and known channels; a repeated id is an error."""
    contacts = read_csv(
        write(
            tmp_path / "c.csv",
            "unit_id,district,name,role,phone,email,locale,channels\n"
            ",,Nobody,grid_worker,,,,\n"
            "u1,,Li,boss,12,not-mail,fr,sms;fax\n",
        ),
        ContactRecord,
        "c.csv",
    )
    assert {(e.row, e.column) for e in contacts.errors} == {
        (2, "district"),
        (3, "role"),
        (3, "phone"),
        (3, "email"),
        (3, "locale"),
        (3, "channels"),
    }
    units = read_csv(write(tmp_path / "u.csv", "id,name\nu1,A\nu2,B\nu1,C\n"), UnitRecord, "u.csv")
    check_unique_ids(units, "u.csv")
    assert [str(e) for e in units.errors] == [
        "u.csv row 4, column id: duplicate id 'u1' (first at row 2)"
    ]


def test_what_a_units_qr_code_shows_is_read_and_checked(tmp_path: Path) -> None:
    """`public` lists what the QR page shows (';'-separated, default address and grade); a
    field that is not one of the three is refused with its column."""
    units = read_csv(
        write(
            tmp_path / "u.csv",
            "id,name,public,public_contact\n"
            "u1,Riverside Mall,emergency_contact;grade,duty room 028-8888 1119\n"
            "u2,Plant,,\n"
            "u3,Shop,phone_numbers,\n",
        ),
        UnitRecord,
    )
    got = {u.id: (u.public, u.public_contact) for _, u in units.records}
    assert got == {
        "u1": (["emergency_contact", "grade"], "duty room 028-8888 1119"),
        "u2": (["address", "grade"], ""),
    }
    assert [(e.row, e.column) for e in units.errors] == [(4, "public")]
