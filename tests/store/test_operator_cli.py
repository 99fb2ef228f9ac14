"""`firesentry deadletters` and `firesentry alerts` as an operator types them."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from firesentry.embedded import Endpoints
from tests.store.test_devices_cli import run


def test_deadletters_list_and_stats(cli_env: Endpoints, capsys: pytest.CaptureFixture[str]) -> None:
    """Rejected messages are listed with reason and payload, and counted per reason."""
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        for reason, dev in (("malformed", "em-1"), ("malformed", "em-2"), ("unknown_device", "x")):
            conn.execute(
                "INSERT INTO rejected_messages (topic, device_id, reason, detail, payload)"
                " VALUES (%s, %s, %s, 'why', %s)",
                (f"fs/v1/{dev}/telemetry", dev, reason, b"{oops"),
            )
    rc, out, _ = run(capsys, "deadletters", "stats")
    assert rc == 0
    lines = [ln.split() for ln in out.splitlines()[2:]]
    assert [ln[:3] for ln in lines] == [["malformed", "2", "2"], ["unknown_device", "1", "1"]]
    rc, out, _ = run(capsys, "deadletters", "list", "--reason", "unknown_device")
    assert rc == 0 and "fs/v1/x/telemetry" in out and "{oops" in out and "em-1" not in out


def test_alerts_cli_ack_close_and_silence(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator lists, acknowledges and closes an alert, and silences a unit, by command."""
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u9', 'Ops Unit')")
        conn.execute("INSERT INTO devices (id, unit_id, type) VALUES ('d9', 'u9', 'water_level')")
        alert_id = conn.execute(
            "INSERT INTO alerts (device_num, unit_id, rule_id, severity, opened_at, last_seen_at)"
            " SELECT num, 'u9', 'tank_level_low', 'major', now(), now() FROM devices"
            " WHERE id = 'd9' RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
    rc, out, _ = run(capsys, "alerts", "list")
    assert rc == 0 and "tank_level_low" in out and "Ops Unit" in out
    rc, out, _ = run(capsys, "alerts", "ack", str(alert_id), "--by", "Li")
    assert rc == 0 and "acknowledged" in out
    rc, out, _ = run(capsys, "alerts", "ack", str(alert_id), "--by", "Li")
    assert rc == 1 and "already acknowledged" in out
    rc, out, _ = run(
        capsys, "alerts", "close", str(alert_id), "--by", "Li", "--comment", "refilled"
    )
    assert rc == 0 and "closed" in out
    rc, out, _ = run(
        capsys,
        "alerts",
        "silence",
        "--unit",
        "u9",
        "--for",
        "2h",
        "--by",
        "Li",
        "--reason",
        "maintenance",
    )
    assert rc == 0 and out.startswith("silence ")
    with psycopg.connect(cli_env.dsn()) as conn:
        ends = conn.execute("SELECT ends_at - now() FROM silences").fetchone()[0]  # type: ignore[index]
    assert dt.timedelta(minutes=119) < ends <= dt.timedelta(hours=2)


def test_alerts_cli_verifies_a_fire_alarm_once_then_closes_it(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """`alerts verify` records the verification (no 119 configured here: nothing queued); a
    second one is refused naming who verified it; close then needs no --verify."""
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u8', 'Fire Unit')")
        conn.execute(
            "INSERT INTO devices (id, unit_id, type) VALUES ('p8', 'u8', 'user_transmission_device')"
        )
        alert_id = conn.execute(
            "INSERT INTO alerts (device_num, unit_id, rule_id, severity, opened_at, last_seen_at,"
            " needs_verification) SELECT num, 'u8', 'fire_alarm', 'critical', now(), now(), true"
            " FROM devices WHERE id = 'p8' RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
    rc, out, _ = run(capsys, "alerts", "close", str(alert_id), "--by", "Li")
    assert rc == 1 and "is a fire alarm: verify it" in out
    rc, out, _ = run(
        capsys, "alerts", "verify", str(alert_id), "--by", "Li", "--verify", "confirmed_fire"
    )
    assert rc == 0 and "acknowledged, verified as confirmed_fire" in out
    rc, out, _ = run(
        capsys, "alerts", "verify", str(alert_id), "--by", "Wu", "--verify", "confirmed_fire"
    )
    assert rc == 1 and "was verified as confirmed_fire by Li" in out
    rc, out, _ = run(capsys, "alerts", "close", str(alert_id), "--by", "Li")
    assert rc == 0 and "closed, verified as confirmed_fire" in out
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        queued = conn.execute("SELECT count(*) FROM notifications").fetchone()
    assert queued == (0,)


def test_hazards_cli_lists_shows_and_steps_a_hazard(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator at a terminal lists the open hazards, reads one's steps, and takes the
    steps its state allows; a step that does not apply says which do."""
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name, district) VALUES ('u7', 'Hazard Unit', 'D7')")
        hazard_id = conn.execute(
            "INSERT INTO hazards (unit_id, category, severity, description, source, found_by,"
            " deadline) VALUES ('u7', 'blocked_exit', 'major', 'exit chained', 'person', 'Zhao',"
            " now() - interval '1 hour') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("UPDATE hazards SET overdue_at = now() WHERE id = %s", (hazard_id,))
    rc, out, _ = run(capsys, "hazards", "list", "--overdue")
    assert rc == 0 and "exit chained" in out and "OVERDUE" in out and "1 hazard(s)" in out
    rc, out, _ = run(capsys, "hazards", "step", str(hazard_id), "close", "--by", "Li")
    assert rc == 1 and "it can be: notify, rectify" in out
    for action, state in (("rectify", "rectifying"), ("submit", "submitted")):
        rc, out, _ = run(
            capsys, "hazards", "step", str(hazard_id), action, "--by", "Li", "--comment", "done"
        )
        assert rc == 0 and f"is now {state}" in out
    rc, out, _ = run(capsys, "hazards", "show", str(hazard_id))
    assert rc == 0 and "Hazard Unit (u7)" in out
    assert [ln.split()[1] for ln in out.splitlines() if ln.startswith("  20")] == [
        "rectifying",
        "submitted",
    ]
    rc, out, _ = run(capsys, "hazards", "show", "999999")
    assert rc == 1 and "no hazard 999999" in out


def test_notify_test_queues_a_version_2_notice_per_address(
    cli_env: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    """`notify test` queues one row per address of the contact (or the channel asked for),
    each a valid version-2 notice in the contact's locale; an unknown contact is an error."""
    from alerts.shape import AlertNotice

    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u8', 'Test Unit')")
        cid = conn.execute(
            "INSERT INTO contacts (name, role, unit_id, phone, email, locale)"
            " VALUES ('Wang Fang', 'fire_safety_manager', 'u8', '+8613800000001',"
            " 'wang@example.cn', 'zh-CN') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
    rc, out, _ = run(capsys, "notify", "test", "--contact", str(cid))
    assert rc == 0 and "sms to +8613800000001" in out and "email to wang@example.cn" in out
    rc, out, _ = run(capsys, "notify", "test", "--contact", str(cid), "--channel", "sms")
    assert rc == 0 and "email" not in out
    rc, out, _ = run(capsys, "notify", "test", "--contact", "999999")
    assert rc == 1 and "no contact 999999" in out
    with psycopg.connect(cli_env.dsn()) as conn:
        rows = conn.execute(
            "SELECT channel, locale, contact_id, payload FROM notifications ORDER BY id"
        ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("sms", "zh-CN", cid),
        ("email", "zh-CN", cid),
        ("sms", "zh-CN", cid),
    ]
    body = AlertNotice.model_validate(rows[0][3])
    assert (body.version, body.status, body.kind) == ("2", "test", "test")
    assert body.alert.message.zh_CN == "测试消息：Wang Fang"
