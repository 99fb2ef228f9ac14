"""`firesentry alerts silence` and `alerts silences list|show|end` as an operator types them."""

from __future__ import annotations

import psycopg
import pytest

from devices.catalog import DeviceType
from firesentry.embedded import Endpoints
from store import registry as reg
from tests.store import conftest as store_conftest
from tests.store.test_devices_cli import run

# The command line pointed at the test database; logging put back after in-process calls.
cli_env = store_conftest.cli_env
pytestmark = pytest.mark.usefixtures("cli_logging")


def _unit(db: Endpoints) -> None:
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u9", "Ops Unit", district="D9")
        reg.add_device(conn, "d9", "u9", DeviceType.UTD)


def test_cli_refuses_an_end_past_the_cap_naming_the_option(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """--until 9999-12-31 and --for 91d are refused with the option and the 90-day cap named;
    an --until in the past is refused; nothing is written."""
    _unit(cli_env)
    common = ["--unit", "u9", "--by", "Li", "--reason", "maintenance"]
    rc, out, _ = run(capsys, "alerts", "silence", *common, "--until", "9999-12-31T00:00:00Z")
    assert rc == 1 and "--until" in out and "90 days" in out, out
    rc, out, _ = run(capsys, "alerts", "silence", *common, "--for", "91d")
    assert rc == 1 and "--for" in out and "90 days" in out, out
    rc, out, _ = run(capsys, "alerts", "silence", *common, "--for", "99999999999999d")
    assert rc == 1 and "--for" in out, out
    rc, out, _ = run(capsys, "alerts", "silence", *common, "--until", "2000-01-01T00:00:00Z")
    assert rc == 1 and "in the past" in out, out
    with psycopg.connect(cli_env.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM silences").fetchone() == (0,)


def test_cli_lists_shows_and_ends_silences(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """A silence made by command is listed and shown (with its note that the control room still
    hears critical alerts); ending it records who and why, and it leaves the current list."""
    _unit(cli_env)
    rc, out, _ = run(
        capsys, "alerts", "silence", "--unit", "u9", "--for", "2h", "--by", "Li",
        "--reason", "panel maintenance",
    )  # fmt: skip
    assert rc == 0 and out.startswith("silence "), out
    assert "control room" in out
    sid = int(out.split()[1])
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alerts (device_num, unit_id, rule_id, severity, opened_at, last_seen_at,"
            " silenced_by) SELECT num, 'u9', 'fire_alarm', 'critical', now(), now(), %s"
            " FROM devices WHERE id = 'd9'",
            (sid,),
        )
    rc, out, _ = run(capsys, "alerts", "silences", "list")
    assert rc == 0 and f"{sid}" in out and "u9" in out and "panel maintenance" in out, out
    rc, out, _ = run(capsys, "alerts", "list")
    assert rc == 0 and f"silenced #{sid}" in out, out
    rc, out, _ = run(capsys, "alerts", "silences", "show", str(sid))
    assert rc == 0 and "author" in out and "Li" in out and "active" in out, out
    rc, out, _ = run(
        capsys, "alerts", "silences", "end", str(sid), "--by", "Wang", "--comment", "done"
    )
    assert rc == 0 and "ended" in out, out
    rc, out, _ = run(capsys, "alerts", "silences", "end", str(sid), "--by", "Wang")
    assert rc == 1 and "already ended" in out, out
    rc, out, _ = run(capsys, "alerts", "silences", "list")
    assert rc == 0 and "panel maintenance" not in out, out
    rc, out, _ = run(capsys, "alerts", "silences", "list", "--state", "all")
    assert "ended" in out and "panel maintenance" in out, out
    rc, out, _ = run(capsys, "alerts", "silences", "show", str(sid))
    assert "Wang" in out and "done" in out, out
    rc, out, _ = run(capsys, "alerts", "silences", "show", "999999")
    assert rc == 1 and "no silence 999999" in out
