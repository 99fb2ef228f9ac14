"""The demo and the service commands, run as a user would run them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pypdf
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
    """`firesentry demo` brings everything up and prints signed alerts from the simulator, and
    one fire alarm reaching the unit's four parties by SMS and the control room's group robot."""
    out = cli(workdir, "demo", "--duration", "36", timeout=120)
    assert "first alert received" in out
    # Nobody verifies the mall's fire alarm: after 15 s it is forwarded to 119 as unverified,
    # signed, with the mall's address.
    forwarded = re.search(r"^\[119 ← 成都市消防监控中心（演示）\] unverified: (.*)$", out, re.M)
    assert forwarded and "滨江购物中心" in forwarded.group(1), out[-3000:]
    assert "signature ok" in forwarded.group(1)
    assert "[webhook] FIRING" in out and "signature ok" in out
    assert "BAD SIGNATURE" not in out
    for rule in ("residual_current_high", "tank_level_low", "pressure_low", "fire_alarm"):
        assert rule in out, f"{rule} missing from demo output"
    # The risk grade weighs the demo's past week: the school's false alarms, the plant's tank
    # and panel fault.
    assert "锦江区第三小学 黄 yellow" in out and "红星纺织厂 橙 orange" in out, out[-2000:]
    # "Multi-party notification": the mall's fire alarm reaches each of its parties by SMS, in
    # their own language, with the unit, its address, the device's place and the detector.
    panel_sms = [
        m
        for m in re.finditer(
            r"^\[sms → (?P<role>fire-safety manager|property manager|grid worker|control room) "
            r"(?P<name>.+?) (?P<phone>\+86\d{3}\*{4}\d{4}), (?P<locale>zh-CN|en)\] (?P<text>.*)$",
            out,
            re.MULTILINE,
        )
        if "demo-u1-utd" in m.group("text")
    ]
    fire_sms: dict[str, re.Match[str]] = {}
    for m in panel_sms:
        fire_sms.setdefault(m.group("role"), m)  # the first: the fire alarm itself
    roles = {"fire-safety manager", "property manager", "grid worker", "control room"}
    # Nobody verified it within the demo's 15 s: every party is told so.
    unverified = {
        m.group("role")
        for m in panel_sms
        if "未确认" in m.group("text") or "not verified" in m.group("text")
    }
    assert unverified == roles, out[-3000:]
    assert set(fire_sms) == roles, f"fire alarm SMS reached only {sorted(fire_sms)}:\n{out}"
    for role, m in fire_sms.items():
        text = m.group("text")
        fire = "[critical] FIRE ALARM" if m.group("locale") == "en" else "【紧急】火警"
        assert text.startswith(fire), (role, text)
        for part in (
            "滨江购物中心",
            "锦江区滨江东路 1 号",
            "1F 消防控制室",
            "3F东侧走廊感烟探测器",
        ):
            assert part in text, (role, part, text)
    assert "en" in {m.group("locale") for m in fire_sms.values()}  # one party reads English
    robot = re.search(r"^\[robot → .+\] 【紧急】火警：滨江购物中心.*\n +(.*)$", out, re.MULTILINE)
    assert robot and "2回路31号" in robot.group(1), out
    assert "no provider configured" not in out
    # Each district's QR sheet, written where the demo's services live, with its units.
    sheets = re.search(r"^一店一码 sheets to print: (.*)$", out, re.M)
    assert sheets, out[-2000:]
    paths = [Path(p) for p in sheets.group(1).split(", ")]
    assert sorted(p.name for p in paths) == [
        "notices-成华区.pdf",
        "notices-锦江区.pdf",
        "qr-sheet-成华区.html",
        "qr-sheet-成华区.pdf",
        "qr-sheet-锦江区.html",
        "qr-sheet-锦江区.pdf",
    ]
    notices = pypdf.PdfReader(next(p for p in paths if p.name == "notices-锦江区.pdf"))
    assert len(notices.pages) == 2 and "滨江购物中心" in notices.pages[0].extract_text()
    jinjiang = next(p for p in paths if "锦江区" in p.name).read_text(encoding="utf-8")
    assert (
        jinjiang.count("<svg") == 2 and "滨江购物中心" in jinjiang and "锦江区第三小学" in jinjiang
    )
    # The school's panel speaks GB/T 26875.3 through the gateway: every frame confirmed after
    # commit, and its detector fault reaches its people by SMS like any device's.
    gb = re.search(
        r"^GB/T 26875\.3: (\d+) frames from 锦江区第三小学's UTD, (\d+) confirmed after commit,"
        r" \d+ sent again, 0 unconfirmed; 0 dead letters$",
        out,
        re.M,
    )
    assert gb and int(gb.group(1)) >= 5 and gb.group(1) == gb.group(2), out[-3000:]
    assert re.search(r"^\[sms → fire-safety manager 赵磊 .*2F 实验室感烟探测器", out, re.M), out[
        -3000:
    ]
    # A hazard in progress at the plant: reported, urged (its people told by SMS), rectifying.
    assert re.search(r"a hazard in progress at 红星纺织厂 \(#\d+, rectifying\)", out), out[:3000]
    assert re.search(r"^\[sms → fire-safety manager .*\] 【消防隐患督促】红星纺织厂", out, re.M)


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
    assert "private broker restarted" in cli(workdir, "broker", "sync")
    assert "shop-1-em" in cli(workdir, "devices", "list")
    out = cli(workdir, "demo", "--duration", "20", timeout=120)
    assert "broker auth is on" in out
    assert "residual_current_high" in out and "signature ok" in out
