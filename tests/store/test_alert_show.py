"""`firesentry alerts show ID` against the real database, as an operator types it."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from alerts.shape import sample_notice
from firesentry.embedded import Endpoints
from store import alert_plan
from store import registry as reg
from tests.store.test_devices_cli import run


def _fire_alarm(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """A panel's fire alarm from loop 2 point 31 at a unit with an address, and its manager."""
    reg.add_unit(conn, "u5", "滨江购物中心", district="锦江区", address="锦江区滨江东路 1 号")
    conn.execute(
        "INSERT INTO devices (id, unit_id, type, location)"
        " VALUES ('utd-5', 'u5', 'user_transmission_device', '1F 消防控制室')"
    )
    manager = reg.add_contact(
        conn, "王芳", "fire_safety_manager", unit_id="u5", phone="+8613800011001"
    )
    reg.add_contact(
        conn, "锦江区消防监控中心", "control_room", district="锦江区", phone="+861390001119"
    )
    reg.add_contact(conn, "张敏", "grid_worker", unit_id="u5", phone="+8613800011003")
    row = conn.execute(
        "INSERT INTO alerts (device_num, unit_id, rule_id, severity, opened_at, last_seen_at,"
        " message_en, message_zh, needs_verification, point_key, loop, point, point_text)"
        " SELECT num, 'u5', 'fire_alarm', 'critical', now(), now(),"
        " 'FIRE ALARM at 滨江购物中心: 3F东侧走廊感烟探测器 (utd-5)',"
        " '火警：滨江购物中心，3F东侧走廊感烟探测器（utd-5）', true, '2-31', 2, 31,"
        " '3F东侧走廊感烟探测器' FROM devices WHERE id = 'utd-5' RETURNING id"
    ).fetchone()
    assert row is not None
    return int(row[0]), manager


def test_show_prints_place_point_contacts_history_and_notifications(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """One alert in full: where it is (address, location, loop/point/text), whom to call, every
    change with who made it, and each notification with its masked receiver, state and tries."""
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        alert_id, manager = _fire_alarm(conn)
        payload = sample_notice("王芳", "u5", conn.execute("SELECT now()").fetchone()[0])  # type: ignore[index]
        alert_plan.enqueue(conn, alert_id, "sms", "+8613800011001", payload, contact_id=manager)
        alert_plan.enqueue(conn, alert_id, "wecom", "control-room-group", payload)
        conn.execute(
            "UPDATE notifications SET state = 'sent', attempts = 2, sent_at = now(),"
            " last_error = 'timeout sending to +8613800011001' WHERE channel = 'sms'"
        )
    assert (
        run(capsys, "alerts", "ack", str(alert_id), "--by", "值班员李", "--comment", "已电话")[0]
        == 0
    )
    rc, out, _ = run(capsys, "alerts", "show", str(alert_id))
    assert rc == 0, out
    fields = dict(re.findall(r"^(\S[^\n]*?) {2,}(.*)$", out.split("\n\n")[0], re.MULTILINE))
    assert fields["state"] == "acknowledged" and fields["severity"] == "critical"
    assert fields["unit"] == "滨江购物中心 (u5)" and fields["address"] == "锦江区滨江东路 1 号"
    assert fields["location"] == "1F 消防控制室"
    assert fields["point"] == "loop 2 point 31: 3F东侧走廊感烟探测器"
    assert fields["message"] == "火警：滨江购物中心，3F东侧走廊感烟探测器（utd-5）"
    assert fields["verification"] == "to verify"
    contacts = out.split("\ncontacts (")[1].split("\n\n")[0]
    # The operator calls these people: full numbers, the district's too (not the control room).
    assert "王芳" in contacts and "+8613800011001" in contacts and "张敏" in contacts
    assert "监控中心" not in contacts
    history = out.split("\nhistory (")[1].split("\n\n")[0]
    assert re.search(r"acknowledged +by 值班员李 — 已电话", history), history
    notes = out.split("\nnotifications (2)")[1]
    sms, robot = [line for line in notes.splitlines() if re.match(r"^ +\d+ ", line)]
    assert "+86138****1001" in sms and "+8613800011001" not in notes
    assert re.search(r"sms +\S+ +王芳 +firing +sent +2 ", sms), sms
    assert "last error: timeout sending to +86138****1001" in sms
    assert re.search(r"wecom +control-room-group +- +firing +pending +0 ", robot), robot


def test_show_of_an_unknown_alert_is_an_error(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id no alert has is reported, with exit status 1."""
    rc, out, _ = run(capsys, "alerts", "show", "987654")
    assert rc == 1 and "no alert 987654" in out
