"""`firesentry simulate` against a running engine: what it says it sent is what got stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firesentry import cli
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from tests.helpers import own_services_dir, scalar, wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def sim_dir(db: Endpoints, prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A working folder and FIRESENTRY_* variables that point the CLI at the test services."""
    for key in list(os.environ):
        if key.startswith("FIRESENTRY_"):
            monkeypatch.delenv(key)
    env = {
        "EMBEDDED__ENABLED": "false",
        "MQTT__HOST": db.mqtt_host,
        "MQTT__PORT": str(db.mqtt_port),
        "MQTT__TOPIC_PREFIX": prefix,
        "DATABASE__HOST": db.db_host,
        "DATABASE__PORT": str(db.db_port),
        "DATABASE__DBNAME": db.db_name,
        "DATABASE__USER": db.db_user,
        "DATABASE__PASSWORD": db.db_password,
    }
    for key, value in env.items():
        monkeypatch.setenv(f"FIRESENTRY_{key}", value)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def simulate(folder: Path, *args: str) -> dict[str, Any]:
    """Run `firesentry simulate` in this process; return its JSON summary."""
    out = folder / "summary.json"
    code = cli.main(["simulate", "--no-progress", "--summary-json", str(out), *args])
    assert code == 0
    return dict(json.loads(out.read_text()))


def stored(db: Endpoints, table: str) -> int:
    return int(scalar(db.dsn(), f"SELECT count(*) FROM {table}"))  # noqa: S608 (fixed names)


def wait_for_counts(db: Endpoints, engine: Engine, summary: dict[str, Any]) -> None:
    """Every message the simulator sent (and every will the broker sent for it) reaches the
    engine, and each is a telemetry/event row or a rejected_messages row."""
    c = summary["counts"]
    expected = summary["messages"] + c["dropped"]
    wait_until(lambda: engine.consumer.committed_messages >= expected, 30, f"{expected} messages")
    assert engine.consumer.committed_messages == expected
    assert stored(db, "telemetry") == c["values"]
    assert stored(db, "events") == c["events"]
    assert stored(db, "rejected_messages") == c["malformed"]


def test_simulated_fleet_with_faults_is_stored_exactly(
    db: Endpoints, engine: Engine, sim_dir: Path
) -> None:
    """Two processes, a connection per device, four scenarios: the counts in the summary match
    the database exactly; the fire alarm opens an alert; the dropped device is back online."""
    summary = simulate(
        sim_dir,
        *("--devices", "16", "--rate", "32", "--duration", "5", "--processes", "2"),
        *("--create-fleet", "--fault-after", "0.5", "--faulty", "1"),
        *("--scenario", "malformed", "--scenario", "false_fire_alarm:hold_s=1"),
        *(
            "--scenario",
            "flaky_link:gap_s=1.5,period_s=3",
            "--scenario",
            "offline_and_back:gap_s=1",
        ),
    )
    c = summary["counts"]
    assert summary["connections"] == 16 and summary["processes"] == 2
    assert c["failed"] == c["refused"] == 0
    assert c["malformed"] > 0 and c["readings"] > 0 and c["events"] >= 2 and c["dropped"] == 1
    assert c["status"] == 16 + 1  # everyone announces itself, the dropped one twice
    wait_for_counts(db, engine, summary)
    assert scalar(db.dsn(), "SELECT count(*) FROM alerts WHERE rule_id = 'fire_alarm'") == 1
    (back,) = summary["faulty"]["offline_and_back"]
    assert scalar(db.dsn(), "SELECT status FROM devices WHERE id = %s", (back,)) == "online"
    assert (sim_dir / "sim-credentials.csv").stat().st_mode & 0o777 == 0o600


def test_shared_connection_for_a_larger_fleet(db: Endpoints, engine: Engine, sim_dir: Path) -> None:
    """Above 200 devices one connection publishes for all of them; a burst main opens its
    alerts and every reading is stored once."""
    summary = simulate(
        sim_dir,
        *("--devices", "400", "--rate", "400", "--duration", "3", "--create-fleet"),
        *("--scenario", "pipe_burst:tau_s=1", "--faulty", "2", "--fault-after", "0.5"),
    )
    c = summary["counts"]
    assert summary["connections"] == 1
    assert summary["messages"] == c["telemetry"] + c["events"] >= 1190
    wait_for_counts(db, engine, summary)
    low = "SELECT count(*) FROM alerts WHERE rule_id = 'pressure_low'"
    wait_until(lambda: scalar(db.dsn(), low) == 2, 10, "two pressure_low alerts")
    # A second run reuses the fleet and its passwords.
    again = simulate(sim_dir, "--devices", "400", "--rate", "400", "--duration", "1")
    assert again["counts"]["failed"] == 0


@pytest.fixture()
def auth_dir() -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder with private services of its own (stopped afterwards)."""
    with own_services_dir("firesentry-sim-") as w:
        yield w


def test_devices_log_in_with_their_own_passwords_when_the_broker_needs_them(
    auth_dir: tuple[Path, dict[str, str]],
) -> None:
    """With broker auth on, --create-fleet syncs the broker and every device logs in as itself:
    nothing is refused."""
    d, env = auth_dir

    def cli_run(*args: str) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "firesentry.cli", *args],
            env=env,
            cwd=d,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    cli_run("up")
    cli_run("migrate")
    assert "private broker restarted" in cli_run("broker", "sync")  # auth on, no device yet
    out = cli_run(
        *("simulate", "--devices", "8", "--rate", "16", "--duration", "2", "--create-fleet"),
        *("--no-progress", "--summary-json", "s.json"),
    )
    assert "broker sync: 8 device account(s), broker restarted" in out
    summary = json.loads((d / "s.json").read_text())
    assert summary["connections"] == 8
    assert summary["counts"]["refused"] == summary["counts"]["failed"] == 0
    assert summary["messages"] >= 8 + 32
