"""The daily and monthly XLSX reports, read back with openpyxl and checked cell by cell.

The day is a local (Asia/Shanghai) calendar day: an alert at 00:00 local belongs to it, one a
minute before or at 00:00 the next day does not. Hazards found, closed and overdue, forwardings
to 119 and grade changes are counted by when they happened, the grade shown is the current one.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from aiohttp.test_utils import TestClient
from openpyxl import load_workbook

from tests.api.conftest import Seeded, auth

Client = TestClient[Any, Any]
CST = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 11, 20)


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    """A local time of the report's day (or another day)."""
    return dt.datetime.combine(day, dt.time(hour, minute), CST)


def _alert(
    conn: psycopg.Connection[Any],
    device: str,
    rule: str,
    opened: dt.datetime,
    verification: str | None = None,
    cause: str | None = None,
) -> int:
    row = conn.execute(
        # Each its own detector (point_key): one alert is open per device, rule and point.
        "INSERT INTO alerts (device_num, unit_id, rule_id, severity, state, opened_at,"
        " last_seen_at, verification, false_alarm_cause, needs_verification, point_key)"
        " SELECT num, unit_id, %s, 'critical', 'acknowledged', %s, %s, %s, %s, %s, %s"
        " FROM devices WHERE id = %s RETURNING id",
        (
            rule,
            opened,
            opened,
            verification,
            cause,
            rule == "fire_alarm",
            opened.isoformat(),
            device,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _history(dsn: str) -> None:
    before, after = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        fire = _alert(conn, "u1-utd", "fire_alarm", at(9), "confirmed_fire")
        _alert(conn, "u1-utd", "fire_alarm", at(10), "false_alarm", "dust_steam")
        _alert(conn, "u1-utd", "fire_alarm", at(11), "false_alarm", "dust_steam")
        _alert(conn, "u1-utd", "fire_alarm", at(12), "false_alarm", "test")
        _alert(conn, "u1-utd", "fire_alarm", at(13))  # nobody verified it
        _alert(conn, "u1-utd", "panel_fault", at(14))
        _alert(conn, "u1-em", "residual_current_high", at(0))  # the first minute of the day
        _alert(conn, "u1-em", "residual_current_high", at(23, 59, before))  # the day before
        _alert(conn, "u1-em", "residual_current_high", at(0, 0, after))  # the next day
        _alert(conn, "u2-wl", "device_offline", at(8))
        _alert(conn, "u2-wl", "tank_level_low", at(20))
        conn.execute(
            "INSERT INTO notifications (alert_id, channel, receiver, payload, kind, state,"
            " sent_at) VALUES (%s, 'fire_119', '119', '{}', 'fire_119', 'sent', %s)",
            (fire, at(9, 1)),
        )
        hazard_ids = []
        for found, deadline, closed in (
            (at(9), at(12), at(11)),  # found and closed that day
            (at(8, 0, before), at(15), None),  # overdue at the day's end, still open
            (at(8, 0, before), at(12, 0, after), None),  # open, not yet due
        ):
            row = conn.execute(
                "INSERT INTO hazards (unit_id, category, severity, description, source,"
                " found_by, found_at, deadline, state, closed_at)"
                " VALUES ('u1', 'other', 'general', 'x', 'person', 'Zhao', %s, %s, %s, %s)"
                " RETURNING id",
                (found, deadline, "closed" if closed else "rectifying", closed),
            ).fetchone()
            assert row is not None
            hazard_ids.append(row[0])
        for who, unit, when, scanned, failed, raised in (
            ("Grid worker Zhao", "u1", at(9), True, 2, hazard_ids[:1]),
            ("Grid worker Zhao", "u2", at(16), False, 0, []),
            ("Grid worker Qian", "u1", at(0, 0, after), True, 0, []),
        ):
            conn.execute(
                "INSERT INTO inspections (unit_id, inspector, at, scanned, checklist_version,"
                " results, failed, hazard_ids) VALUES (%s, %s, %s, %s, 'v', '[]', %s, %s)",
                (unit, who, when, scanned, failed, raised),
            )
        conn.execute(
            "INSERT INTO unit_grade_changes (unit_id, at, from_grade, to_grade, score, reasons,"
            " model_version, trigger) VALUES ('u1', %s, 'blue', 'orange', 30, '[]', 'm', 's')",
            (at(15),),
        )
        conn.execute(
            "INSERT INTO unit_grades (unit_id, grade, score, reasons, model_version, since,"
            " computed_at) VALUES ('u1', 'orange', 30, '[]', 'm', %s, %s)",
            (at(15), at(15)),
        )


async def _book(client: Client, seeded: Seeded, query: str) -> Any:
    r = await client.get(f"/api/v1/reports/{query}", headers=auth(seeded.tokens["analyst"]))
    assert r.status == 200, await r.text()
    assert r.content_type.endswith("spreadsheetml.sheet")
    return load_workbook(io.BytesIO(await r.read()))


def _rows(ws: Any) -> list[list[Any]]:
    return [list(r) for r in ws.iter_rows(values_only=True)]


async def test_a_daily_report_counts_the_local_day_cell_by_cell(
    client: Client, seeded: Seeded
) -> None:
    _history(seeded.dsn)
    book = await _book(client, seeded, "daily.xlsx?date=2026-11-20")
    assert book.sheetnames == [
        "汇总 Summary",
        "单位 Units",
        "误报原因 False alarms",
        "检查 Inspections",
        "值班 Duty",
    ]
    summary = _rows(book["汇总 Summary"])
    assert summary[0][0] == "消防安全日报 Daily report · 2026-11-20 · 全部辖区 all districts"
    assert str(summary[1][0]).startswith("生成于 Made ")
    assert summary[3] == [
        "辖区 District",
        "单位数 Units",
        "告警 Alerts",
        "火警 Fire alarms",
        "真实火警 Confirmed fires",
        "误报 False alarms",
        "未核实 Not verified",
        "转报119 Forwarded to 119",
        "故障 Faults",
        "离线 Offline",
        "隐患发现 Hazards found",
        "隐患销案 Hazards closed",
        "隐患逾期 Hazards overdue",
        "等级变化 Grade changes",
    ]
    #               units alerts fire conf false unver 119 fault off found closed overdue grade
    assert summary[4] == ["D1", 1, 7, 5, 1, 3, 1, 1, 1, 0, 1, 1, 1, 1]
    assert summary[5] == ["D2", 1, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert summary[6] == ["合计 Total", 2, 9, 5, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1]
    assert len(summary) == 7

    units = _rows(book["单位 Units"])
    assert units[0][:4] == ["单位 Unit", "名称 Name", "辖区 District", "等级 Grade now"]
    assert units[1] == [
        "u1",
        "Riverside Mall",
        "D1",
        "橙 orange",
        7,
        5,
        1,
        3,
        1,
        1,
        1,
        0,
        1,
        1,
        1,
        1,
    ]
    assert units[2] == ["u2", "No. 3 School", "D2", "–", 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]

    causes = _rows(book["误报原因 False alarms"])
    assert causes == [
        ["辖区 District", "原因 Cause", "次数 Count"],
        ["D1", "粉尘/水汽 dust or steam", 2],
        ["D1", "测试 test", 1],
    ]
    inspections = _rows(book["检查 Inspections"])
    assert inspections == [
        [
            "检查人员 Inspector",
            "检查次数 Inspections",
            "现场扫码 At the unit",
            "单位数 Units",
            "不合格项 Items failed",
            "生成隐患 Hazards raised",
            "已销案 Closed",
        ],
        # Zhao: two on the day (one by the code, 2 items failed, one hazard since closed);
        # Qian's at 00:00 the next day belongs to the next day's report.
        ["Grid worker Zhao", 2, 1, 2, 2, 1, 1],
    ]


async def test_a_monthly_report_of_one_district_and_a_token_scope(
    client: Client, seeded: Seeded
) -> None:
    """The month holds the day before and after too; a district filter keeps to it; a token
    limited to units sees only theirs; a stranger's date is refused."""
    _history(seeded.dsn)
    book = await _book(client, seeded, "monthly.xlsx?date=2026-11-05&district=D1")
    summary = _rows(book["汇总 Summary"])
    assert summary[0][0] == "消防安全月报 Monthly report · 2026-11 · D1"
    # 7 alerts of the day, and one alert on each of the days around it.
    assert summary[4][:3] == ["D1", 1, 9] and len(summary) == 6
    r = await client.get(
        "/api/v1/reports/daily.xlsx?date=2026-11-20",
        headers=auth(seeded.tokens["analyst_u2"]),
    )
    scoped = load_workbook(io.BytesIO(await r.read()))
    assert [row[0] for row in _rows(scoped["单位 Units"])[1:]] == ["u2"]
    bad = await client.get(
        "/api/v1/reports/daily.xlsx?date=20-11-2026", headers=auth(seeded.tokens["analyst"])
    )
    assert bad.status == 400
    denied = await client.get("/api/v1/reports/daily.xlsx", headers=auth(seeded.tokens["operator"]))
    assert denied.status == 403
