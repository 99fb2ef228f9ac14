"""`firesentry devices ...` as a user runs it, against the test database."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg
import pytest

from devices.credentials import verify
from firesentry.cli import main
from firesentry.embedded import Endpoints
from tests.helpers import scalar


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_import_list_show(cli_env: Endpoints, capsys: pytest.CaptureFixture[str]) -> None:
    """import reports counts and writes credentials.csv (0600); list and show print the devices."""
    rc, out, _ = run(capsys, "devices", "import", "units.csv", "devices.csv", "contacts.csv")
    assert rc == 0
    assert "units     2 new, 0 updated, 0 unchanged" in out
    assert "devices   3 new, 0 updated, 0 unchanged" in out
    assert "contacts  3" in out and "3 new device password(s) written to credentials.csv" in out
    assert stat.S_IMODE(Path("credentials.csv").stat().st_mode) == 0o600
    rc, out, _ = run(capsys, "devices", "list", "--unit", "u1")
    lines = out.splitlines()
    assert lines[0].split() == ["id", "unit", "type", "status", "last_seen"]
    assert [line.split() for line in lines[1:]] == [
        ["u1-em", "u1", "electrical_monitor", "unknown", "-"],
        ["u1-wl", "u1", "water_level", "unknown", "-"],
    ]
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        conn.execute("UPDATE devices SET last_seen = now() WHERE id = 'u2-utd'")
    rc, out, _ = run(capsys, "devices", "list", "--status", "online")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["u2-utd"]
    rc, out, _ = run(capsys, "devices", "show", "u1-wl")
    assert rc == 0
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["unit"] == "u1 (Riverside Mall)" and fields["heartbeat_s"] == "300"
    assert fields["status"].startswith("unknown") and fields["password"] == "set"
    assert fields["attributes"] == "tank_depth_m=3.0"
    assert run(capsys, "devices", "show", "nope")[0] == 1


def test_import_errors_go_to_stderr(
    cli_env: Endpoints, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed import exits 1, lists every problem with file, row and column, and caps the list."""
    bad = "id,unit_id,type\n" + "".join(f"d{i},nowhere,water_level\n" for i in range(60))
    (tmp_path / "bad.csv").write_text(bad)
    rc, out, err = run(capsys, "devices", "import", "units.csv", "bad.csv")
    assert rc == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "firesentry: nothing imported; 60 problems:"
    assert lines[1] == (
        "  bad.csv row 2, column unit_id: unit 'nowhere' is neither in units.csv nor in the database"
    )
    assert len(lines) == 52 and lines[-1] == "  ... and 10 more"
    assert scalar(cli_env.dsn(), "SELECT count(*) FROM units") == 0


def test_add_prints_the_password_once(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """add stores only the hash of the password it prints; bad options name the option."""
    assert run(capsys, "devices", "import", "units.csv", "devices.csv")[0] == 0
    rc, out, _ = run(
        capsys,
        *("devices", "add", "--id", "u2-wp", "--unit", "u2", "--type", "water_pressure"),
        *("--attr", "min_pressure_mpa=0.15", "--attr", "note=east main"),
    )
    assert rc == 0
    password = next(line.split(": ")[1] for line in out.splitlines() if "password:" in line)
    dsn = cli_env.dsn()
    hashed = scalar(dsn, "SELECT password_hash FROM devices WHERE id = 'u2-wp'")
    assert verify(password, hashed)
    attrs = scalar(dsn, "SELECT attributes FROM devices WHERE id = 'u2-wp'")
    assert attrs == {"min_pressure_mpa": 0.15, "note": "east main"}
    rc, _, err = run(
        capsys, "devices", "add", "--id", "u2-wp", "--unit", "u2", "--type", "water_level"
    )
    assert rc == 1 and "--id: device 'u2-wp' exists" in err
    rc, _, err = run(
        capsys, "devices", "add", "--id", "x", "--unit", "u404", "--type", "water_level"
    )
    assert rc == 1 and "--unit: no unit 'u404'" in err
    rc, _, err = run(
        capsys,
        *("devices", "add", "--id", "bad id", "--unit", "u1", "--type", "water_level"),
        *("--heartbeat-s", "0"),
    )
    assert rc == 2 and "--id:" in err and "--heartbeat-s:" in err
    rc, out, _ = run(capsys, "devices", "passwd", "u2-wp")
    new = next(line.split(": ")[1] for line in out.splitlines() if "password:" in line)
    assert rc == 0 and new != password
    assert verify(new, scalar(dsn, "SELECT password_hash FROM devices WHERE id = 'u2-wp'"))


@pytest.mark.parametrize("device_id", ["ingest", "Ingest-2", "firesentry-ingest"])
def test_the_engines_account_names_are_refused_as_device_ids(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str], device_id: str
) -> None:
    """A device named after an ingest account would share its broker account and session:
    `devices add` refuses it with the reason, and so does the database behind any other path."""
    assert run(capsys, "devices", "import", "units.csv", "devices.csv")[0] == 0
    rc, _, err = run(
        capsys, "devices", "add", "--id", device_id, "--unit", "u1", "--type", "water_level"
    )
    assert rc == 2 and "--id:" in err and "reserved" in err
    with (
        psycopg.connect(cli_env.dsn(), autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        conn.execute(
            "INSERT INTO devices (id, unit_id, type) VALUES (%s, 'u1', 'water_level')",
            (device_id,),
        )
