"""Report endpoints: a district's (or every district's) daily or monthly report as XLSX."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import psycopg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Permission
from api.routing import PREFIX, Call, Route
from store import duty as store_duty
from store import inspections as store_inspections
from store import reports as store
from store.inspections import InspectionFilter
from supervision.reports import Period, bounds, workbook

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ReportQuery(BaseModel):
    """GET /reports/{daily|monthly}.xlsx: which day (or a day of the month) and district."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: dt.date | None = Field(
        default=None, description="the local day (daily) or a day of the month; default today"
    )
    district: str | None = Field(default=None, max_length=100)


async def report(call: Call) -> web.StreamResponse:
    """GET /reports/{period}.xlsx."""
    rq = call.q(ReportQuery)
    period: Period = call.request.match_info["period"]  # type: ignore[assignment]
    tz = call.state.options.timezone
    now = dt.datetime.now(dt.UTC)
    b = bounds(period, rq.date or now.astimezone(ZoneInfo(tz)).date(), tz)
    scope = call.who.scope

    def build(conn: psycopg.Connection[Any]) -> bytes:
        units = store.unit_periods(conn, b.start, b.end, district=rq.district, scope=scope)
        causes = store.false_alarm_causes(conn, b.start, b.end, district=rq.district, scope=scope)
        # The duty log is the control room's: in a report of every district, for tokens of
        # every unit.
        shifts = (
            store_duty.shifts(conn, since=b.start, until=b.end, limit=1000)
            if rq.district is None and scope is None
            else []
        )
        seen = InspectionFilter(district=rq.district, since=b.start, until=b.end, scope=scope)
        inspectors = store_inspections.by_inspector(conn, seen)
        return workbook(
            b, units, causes, shifts, inspectors, district=rq.district, made_at=now, timezone=tz
        )

    data = await call.state.db(build)
    name = f"firesentry-{period}-{b.title}{'-' + rq.district if rq.district else ''}.xlsx"
    return web.Response(
        body=data,
        content_type=XLSX,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(name)}",
            "Cache-Control": "no-store",
        },
    )


def _quote(name: str) -> str:
    return quote(name, safe="")


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/reports/{{period:(?:daily|monthly)}}.xlsx",
        report,
        "A daily or monthly report per district and unit (XLSX): alarms, confirmed fires, false "
        "alarms and causes, faults, offline, forwardings to 119, hazards, grade changes",
        Permission.STATS_READ,
        "reports",
        query=ReportQuery,
        media=XLSX,
        path_params={"period": "daily or monthly"},
    ),
]
