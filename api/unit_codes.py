"""一店一码 endpoints: a unit's QR code, its 四色告知牌, a district's sheet (HTML and PDF),
the public page."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from api.auth import Permission
from api.models import UnitsQuery
from api.routing import PREFIX, ApiError, Call, Route, not_found
from store import units as store_units
from supervision.unit_code import (
    notice_html,
    public_html,
    qr_png,
    sheet_html,
    unit_url,
)
from supervision.unit_code_pdf import FONT_FIX, notices_pdf, sheet_pdf

_TOKEN = re.compile(r"^[0-9a-f]{32}$")


# The printable pages and the public page carry their styles inline (so that they print and
# save as one file) and run no script: their own policy allows exactly that. Under the
# console's (style-src 'self') a phone that scanned a code saw the page unstyled.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def _html(text: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": PAGE_CSP,
        },
    )


async def _one(call: Call) -> store_units.UnitCodeRow:
    unit_id = call.request.match_info["id"]
    if not call.who.sees_unit(unit_id):
        raise not_found(f"unit {unit_id}")
    found = await call.state.db(store_units.unit_codes, unit_id=unit_id)
    if not found:
        raise not_found(f"unit {unit_id}")
    return found[0]


async def unit_qr(call: Call) -> web.StreamResponse:
    """GET /units/{id}/qr.png."""
    u = await _one(call)
    png = qr_png(unit_url(call.state.options.public_url, u.qr_token))
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "no-store"})


async def unit_notice(call: Call) -> web.StreamResponse:
    """GET /units/{id}/notice."""
    u = await _one(call)
    return _html(notice_html(u, call.state.options.public_url, dt.datetime.now(dt.UTC).date()))


async def code_sheet(call: Call) -> web.StreamResponse:
    """GET /units/codes."""
    district, rows = await _district_rows(call)
    title = f"一店一码 · {district or '全部单位'} · {len(rows)}"
    return _html(sheet_html(rows, call.state.options.public_url, title))


def _pdf(data: bytes, name: str) -> web.Response:
    return web.Response(
        body=data,
        content_type="application/pdf",
        headers={
            # inline: the console shows it in the browser's viewer; saving keeps the name.
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name, safe='')}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _font(call: Call) -> Path:
    font = call.state.options.pdf_font
    if font is None:
        raise ApiError(
            503, "no_pdf_font", f"no CJK font for PDF on the server: set api.pdf_font to {FONT_FIX}"
        )
    return font


def _today(call: Call) -> dt.date:
    return dt.datetime.now(ZoneInfo(call.state.options.timezone)).date()


async def unit_notice_pdf(call: Call) -> web.StreamResponse:
    """GET /units/{id}/notice.pdf."""
    font = _font(call)
    u = await _one(call)
    o = call.state.options
    data = await asyncio.to_thread(
        notices_pdf, [u], o.public_url, _today(call), font, f"告知牌 {u.name}"
    )
    return _pdf(data, f"告知牌-{u.id}.pdf")


async def _district_rows(call: Call) -> tuple[str | None, Sequence[store_units.UnitCodeRow]]:
    uq = call.q(UnitsQuery)
    rows = await call.state.db(store_units.unit_codes, call.who.scope, district=uq.district)
    return uq.district, rows


async def notices_batch_pdf(call: Call) -> web.StreamResponse:
    """GET /units/notices.pdf."""
    font = _font(call)
    district, rows = await _district_rows(call)
    title = f"四色告知牌 · {district or '全部单位'} · {len(rows)}"
    o = call.state.options
    data = await asyncio.to_thread(notices_pdf, rows, o.public_url, _today(call), font, title)
    return _pdf(data, f"告知牌-{district or 'all'}.pdf")


async def code_sheet_pdf(call: Call) -> web.StreamResponse:
    """GET /units/codes.pdf."""
    font = _font(call)
    district, rows = await _district_rows(call)
    title = f"一店一码 · {district or '全部单位'} · {len(rows)}"
    o = call.state.options
    data = await asyncio.to_thread(sheet_pdf, rows, o.public_url, _today(call), font, title)
    return _pdf(data, f"一店一码-{district or 'all'}.pdf")


async def public_unit(call: Call) -> web.StreamResponse:
    """GET /u/{token}."""
    token = call.request.match_info["token"]
    # Anything but a well-formed token is a 404 before the database is asked.
    found = (
        await call.state.db(store_units.unit_codes, qr_token=token) if _TOKEN.match(token) else []
    )
    if not found:
        raise not_found("unit code")
    u = found[0]
    # The unit's page with its code: an inspector who signs in there records an inspection
    # as made at the unit (the code is on its door; anyone who scanned it may know it).
    console = f"{call.state.options.public_url.rstrip('/')}/#/unit/{u.id}/code/{u.qr_token}"
    return _html(public_html(u, console))


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/units/{{id}}/qr.png",
        unit_qr,
        "The unit's QR code (一店一码) as a PNG: it opens <api.public_url>/u/<the unit's code>",
        Permission.UNITS_READ,
        "units",
        media="image/png",
        path_params={"id": "the unit's id"},
    ),
    Route(
        "GET",
        f"{PREFIX}/units/{{id}}/notice",
        unit_notice,
        "The unit's printable 四色告知牌 (HTML, A5): grade in its colour, the unit, the date, "
        "the reasons and the QR code",
        Permission.UNITS_READ,
        "units",
        media="text/html",
        path_params={"id": "the unit's id"},
    ),
    Route(
        "GET",
        f"{PREFIX}/units/codes",
        code_sheet,
        "A printable sheet of QR codes (HTML), every unit in scope or one `district`'s",
        Permission.UNITS_READ,
        "units",
        query=UnitsQuery,
        media="text/html",
    ),
    Route(
        "GET",
        f"{PREFIX}/units/{{id}}/notice.pdf",
        unit_notice_pdf,
        "The unit's 四色告知牌 as an A5 PDF, its CJK font embedded (api.pdf_font); 503 when "
        "the server has no such font",
        Permission.UNITS_READ,
        "units",
        media="application/pdf",
        path_params={"id": "the unit's id"},
    ),
    Route(
        "GET",
        f"{PREFIX}/units/notices.pdf",
        notices_batch_pdf,
        "Every unit's 四色告知牌 in scope, or one `district`'s, as a PDF of A5 pages, one a unit",
        Permission.UNITS_READ,
        "units",
        query=UnitsQuery,
        media="application/pdf",
    ),
    Route(
        "GET",
        f"{PREFIX}/units/codes.pdf",
        code_sheet_pdf,
        "A sheet of QR codes as a PDF (A4, 12 a page, name, grade and address under each), "
        "every unit in scope or one `district`'s",
        Permission.UNITS_READ,
        "units",
        query=UnitsQuery,
        media="application/pdf",
    ),
    Route(
        "GET",
        "/u/{token}",
        public_unit,
        "What anyone who scans a unit's code sees (no token): its name, address and grade, "
        "and a link for inspectors to the unit's page in the console",
        None,
        "units",
        authenticated=False,
        media="text/html",
        path_params={"token": "the unit's code (units.qr_token)"},
    ),
]
