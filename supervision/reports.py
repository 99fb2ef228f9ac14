"""Daily and monthly reports per district and unit as an XLSX workbook (openpyxl): the
period's alarms, confirmed fires, false alarms and their causes, faults, offline devices,
forwardings to 119, hazards found / closed / overdue and grade changes.

Plain data in, bytes out; the period is a local calendar day or month (its bounds in UTC are
what the store reads).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from store.duty import Shift
from store.inspections import InspectorCount
from store.reports import CauseCount, UnitPeriod

Period = Literal["daily", "monthly"]
GRADE_WORDS = {"red": "红 red", "orange": "橙 orange", "yellow": "黄 yellow", "blue": "蓝 blue"}
CAUSE_WORDS = {
    "test": "测试 test",
    "dust_steam": "粉尘/水汽 dust or steam",
    "equipment_fault": "设备故障 equipment fault",
    "malicious": "人为误触发 malicious",
    "unknown": "原因不明 unknown",
}
# (heading, UnitPeriod field) of the figures, in the order of the columns.
FIGURES: tuple[tuple[str, str], ...] = (
    ("告警 Alerts", "alerts"),
    ("火警 Fire alarms", "fire_alarms"),
    ("真实火警 Confirmed fires", "confirmed_fires"),
    ("误报 False alarms", "false_alarms"),
    ("未核实 Not verified", "unverified"),
    ("转报119 Forwarded to 119", "forwarded_119"),
    ("故障 Faults", "faults"),
    ("离线 Offline", "offline"),
    ("隐患发现 Hazards found", "hazards_found"),
    ("隐患销案 Hazards closed", "hazards_closed"),
    ("隐患逾期 Hazards overdue", "hazards_overdue"),
    ("等级变化 Grade changes", "grade_changes"),
)


@dataclass(frozen=True, slots=True)
class Bounds:
    """A report's period: its local first day, and its bounds in UTC."""

    period: Period
    first_day: dt.date
    start: dt.datetime
    end: dt.datetime

    @property
    def title(self) -> str:
        """'2026-12-03' for a day, '2026-12' for a month."""
        if self.period == "daily":
            return self.first_day.isoformat()
        return f"{self.first_day:%Y-%m}"


def bounds(period: Period, day: dt.date, timezone: str) -> Bounds:
    """The local day, or the local month holding `day`, as UTC bounds."""
    tz = ZoneInfo(timezone)
    if period == "daily":
        first, after = day, day + dt.timedelta(days=1)
    else:
        first = day.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)

    def at(d: dt.date) -> dt.datetime:
        return dt.datetime.combine(d, dt.time(), tz).astimezone(dt.UTC)

    return Bounds(period, first, at(first), at(after))


def _sheet_rows(ws: Worksheet, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    ws.append(list(header))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for r in rows:
        ws.append(list(r))
    for i, text in enumerate(header, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(10, len(text) + 2)
    ws.freeze_panes = "A2"


def workbook(
    b: Bounds,
    units: Sequence[UnitPeriod],
    causes: Sequence[CauseCount],
    shifts: Sequence[Shift] = (),
    inspectors: Sequence[InspectorCount] = (),
    *,
    district: str | None,
    made_at: dt.datetime,
    timezone: str,
) -> bytes:
    """The report as XLSX bytes: a summary per district (with a total row), one row per unit,
    false alarms by cause, what each inspector did (inspections, at the unit by its code,
    failed items, hazards raised and closed), and the duty log's shifts of the period."""
    wb = Workbook()
    summary = wb.active
    assert summary is not None
    summary.title = "汇总 Summary"
    kind = "日报 Daily report" if b.period == "daily" else "月报 Monthly report"
    where = district or "全部辖区 all districts"
    made = made_at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
    summary.append([f"消防安全{kind} · {b.title} · {where}"])
    summary["A1"].font = Font(bold=True, size=13)
    summary.append([f"生成于 Made {made} ({timezone})"])
    summary.append([])
    by_district: dict[str, list[int]] = {}
    counts: dict[str, int] = {}
    for u in units:
        row = by_district.setdefault(u.district, [0] * len(FIGURES))
        counts[u.district] = counts.get(u.district, 0) + 1
        for i, (_, field) in enumerate(FIGURES):
            row[i] += int(getattr(u, field))
    header = ["辖区 District", "单位数 Units", *(h for h, _ in FIGURES)]
    summary.append(header)
    for cell in summary[4]:
        cell.font = Font(bold=True)
    for name, figures in by_district.items():
        summary.append([name or "–", counts[name], *figures])
    total = [sum(col) for col in zip(*by_district.values(), strict=True)] or [0] * len(FIGURES)
    summary.append(["合计 Total", sum(counts.values()), *total])
    for cell in summary[summary.max_row]:
        cell.font = Font(bold=True)
    for i, text in enumerate(header, start=1):
        summary.column_dimensions[get_column_letter(i)].width = max(10, len(text) + 2)

    _sheet_rows(
        wb.create_sheet("单位 Units"),
        ["单位 Unit", "名称 Name", "辖区 District", "等级 Grade now", *(h for h, _ in FIGURES)],
        [
            [
                u.unit_id,
                u.name,
                u.district,
                GRADE_WORDS.get(u.grade or "", "–"),
                *(int(getattr(u, f)) for _, f in FIGURES),
            ]
            for u in units
        ],
    )
    _sheet_rows(
        wb.create_sheet("误报原因 False alarms"),
        ["辖区 District", "原因 Cause", "次数 Count"],
        [[c.district or "–", CAUSE_WORDS.get(c.cause, c.cause), c.count] for c in causes],
    )
    _sheet_rows(
        wb.create_sheet("检查 Inspections"),
        [
            "检查人员 Inspector",
            "检查次数 Inspections",
            "现场扫码 At the unit",
            "单位数 Units",
            "不合格项 Items failed",
            "生成隐患 Hazards raised",
            "已销案 Closed",
        ],
        [
            [
                c.inspector,
                c.inspections,
                c.scanned,
                c.units,
                c.failed_items,
                c.hazards,
                c.hazards_closed,
            ]
            for c in inspectors
        ],
    )
    local = ZoneInfo(timezone)

    def when(t: dt.datetime | None) -> str:
        return t.astimezone(local).strftime("%Y-%m-%d %H:%M") if t else "值班中 on duty"

    _sheet_rows(
        wb.create_sheet("值班 Duty"),
        [
            "值班员 Operator",
            "开始 Start",
            "结束 End",
            "交给 Handed to",
            "交接说明 Handover note",
            "交接时未关闭告警 Open alerts",
            "未销案隐患 Open hazards",
            "记录 Notes",
        ],
        [
            [
                s.operator,
                when(s.started_at),
                when(s.ended_at),
                s.handed_to,
                s.handover_note,
                (s.open_at_handover or {}).get("alerts_total", ""),
                (s.open_at_handover or {}).get("hazards_open", ""),
                "\n".join(f"{when(n.at)} {n.author}: {n.text}" for n in s.notes),
            ]
            for s in sorted(shifts, key=lambda x: x.started_at)
        ],
    )
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
