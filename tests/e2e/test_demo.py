"""The demo and the service commands, run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import own_services_dir

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def workdir() -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder for .firesentry/ of its own and the environment that points at it."""
    with own_services_dir("firesentry-demo-") as w:
        yield w


def cli(workdir: tuple[Path, dict[str, str]], *args: str, timeout: float = 60) -> str:
    d, env = workdir
    res = subprocess.run(
        [sys.executable, "-m", "firesentry.cli", *args],
        env=env,
        cwd=d,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_demo_prints_a_received_alert(workdir: tuple[Path, dict[str, str]]) -> None:
    """`firesentry demo` brings everything up and prints signed alerts from the simulator."""
    out = cli(workdir, "demo", "--duration", "25", timeout=120)
    assert "first alert received" in out
    assert "[webhook] FIRING" in out and "signature ok" in out
    assert "BAD SIGNATURE" not in out
    for rule in ("residual_current_high", "tank_level_low", "pressure_low", "fire_alarm"):
        assert rule in out, f"{rule} missing from demo output"


def test_up_reuses_running_services_and_down_stops_them(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    """`up` twice gives the same ports; `status` and `down` report and stop them."""
    first = cli(workdir, "up")
    assert cli(workdir, "up") == first
    status = cli(workdir, "status")
    assert "running" in status and "stopped" not in status
    # `up` migrated (as the schema owner); `migrate` finds nothing to do and re-grants the app.
    assert cli(workdir, "migrate").startswith("schema is up to date\n")
    cli(workdir, "down")
    assert cli(workdir, "status").count("stopped") == 2


def test_registry_commands_and_broker_auth_keep_the_demo_working(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    """import, sync (auth on, broker restarted), then the demo's devices log in with passwords."""
    d, _ = workdir
    (d / "units.csv").write_text("id,name,district,category\nshop-1,Corner Shop,D1,small_venue\n")
    (d / "devices.csv").write_text("id,unit_id,type\nshop-1-em,shop-1,electrical_monitor\n")
    out = cli(workdir, "devices", "import", "units.csv", "devices.csv")
    assert "1 new device password(s) written to credentials.csv" in out
    out = cli(workdir, "broker", "sync")
    assert "1 device(s) + ingest" in out and "private broker restarted" in out
    assert "private broker reloaded" in cli(workdir, "broker", "sync")
    assert "shop-1-em" in cli(workdir, "devices", "list")
    out = cli(workdir, "demo", "--duration", "20", timeout=120)
    assert "broker auth is on" in out
    assert "residual_current_high" in out and "signature ok" in out
