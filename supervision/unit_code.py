"""一店一码: a unit's stable QR code, its printable 四色告知牌 and a district's sheet of codes.

The code holds `<public_url>/u/<qr_token>`: the token is the unit's own random identity
(units.qr_token), never its id, so codes cannot be guessed from one another and stay valid
when a unit is renamed. Plain functions over plain data; the HTML is self-contained (the QR as
inline SVG, styles inline) so that a browser prints it as it is.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import io
from collections.abc import Sequence

import segno

from store.units import UnitCodeRow
from supervision.model import GRADE_ZH, Grade

# Print colours of the four grades (the notice is read from a metre away: full colours).
GRADE_COLOURS = {
    Grade.RED: "#d91e18",
    Grade.ORANGE: "#f57c00",
    Grade.YELLOW: "#fbc02d",
    Grade.BLUE: "#1e6fd9",
}
GRADE_WORDS = {
    Grade.RED: ("高风险", "high risk"),
    Grade.ORANGE: ("较高风险", "elevated risk"),
    Grade.YELLOW: ("一般风险", "moderate risk"),
    Grade.BLUE: ("低风险", "low risk"),
}


def unit_url(public_url: str, qr_token: str) -> str:
    """The address a unit's code opens."""
    return f"{public_url.rstrip('/')}/u/{qr_token}"


def qr_png(url: str, scale: int = 8) -> bytes:
    """The code as a PNG (black on white, a 4-module quiet zone)."""
    buf = io.BytesIO()
    segno.make_qr(url, error="m").save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


def qr_svg(url: str, scale: int = 6) -> str:
    """The code as inline SVG markup."""
    buf = io.BytesIO()
    segno.make_qr(url, error="m").save(
        buf, kind="svg", scale=scale, border=4, xmldecl=False, svgns=True, nl=False
    )
    return buf.getvalue().decode()


def grade_of(u: UnitCodeRow) -> Grade | None:
    """The unit's grade, None before its first grading."""
    return Grade(u.grade) if u.grade else None


def _grade_css() -> str:
    rules = [
        f".g-{g.value} {{ --c: {c}; --ink: {'#111' if g == Grade.YELLOW else '#fff'}; }}"
        for g, c in GRADE_COLOURS.items()
    ]
    return "\n".join([".g-none { --c: #777; --ink: #fff; }", *rules])


# One fixed style sheet for every page, the grades' colours as classes: no style depends on the
# unit, so the console's policy can allow exactly this text by its hash (STYLE_HASH) when it
# shows a page from a blob, which inherits the console's policy.
STYLE = (
    """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
       "Microsoft YaHei", sans-serif; margin: 0; color: #111; background: #fff; }
.notice { width: 148mm; min-height: 200mm; margin: 8mm auto; border: 3mm solid var(--c);
          padding: 8mm; box-sizing: border-box; page-break-after: always; }
.notice.public { min-height: 0; width: auto; max-width: 120mm; }
.band { background: var(--c); color: var(--ink); text-align: center; padding: 6mm 0; }
.band .big { font-size: 40pt; font-weight: 700; letter-spacing: .3em; }
h1 { font-size: 20pt; margin: 6mm 0 2mm; } h1.sheet-title { padding: 0 8mm; }
.muted { color: #555; font-size: 10pt; }
.qr { text-align: center; margin-top: 6mm; } ul { font-size: 11pt; }
.sheet { display: grid; grid-template-columns: repeat(3, 1fr); gap: 6mm; padding: 8mm; }
.card { border: 1px solid #999; padding: 3mm; text-align: center; break-inside: avoid; }
.chip { display: inline-block; padding: 0 2mm; background: var(--c); color: var(--ink); }
@media print { .notice { margin: 0 auto; } }
"""
    + _grade_css()
    + "\n"
)
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _g(g: Grade | None) -> str:
    return f"g-{g.value}" if g else "g-none"


def notice_html(u: UnitCodeRow, public_url: str, today: dt.date) -> str:
    """The unit's 四色告知牌: grade in its colour, the unit, the date, the reasons, the code."""
    g = grade_of(u)
    zh, en = GRADE_WORDS[g] if g else ("尚未评定", "not graded yet")
    colour_word = f"{GRADE_ZH[g]}色" if g else "—"
    since = f"评定于 {u.grade_since:%Y-%m-%d}" if u.grade_since else ""
    said = (str(r.get("zh-CN", "")) for r in u.reasons)
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in said) or "<li>无风险因素</li>"
    body = f"""<div class="notice {_g(g)}" data-unit="{html.escape(u.id)}" data-grade="{u.grade or ""}">
<div class="band"><div class="big">{colour_word}</div><div>消防安全风险等级 · {zh} ({en})</div></div>
<h1>{html.escape(u.name)}</h1>
<div class="muted">{html.escape(u.district)} · {html.escape(u.address)}</div>
<p class="muted">四色风险告知牌 · {since} · 打印于 {today:%Y-%m-%d}</p>
<ul>{reasons}</ul>
<div class="qr">{qr_svg(unit_url(public_url, u.qr_token))}
<div class="muted">扫码查看本单位消防安全信息 · Scan for this unit's fire-safety record</div></div>
</div>"""
    return _page(f"告知牌 {u.name}", body)


def sheet_html(units: Sequence[UnitCodeRow], public_url: str, title: str) -> str:
    """A sheet of codes to print and stick up, three a row: name, grade, the code."""
    cards = []
    for u in units:
        g = grade_of(u)
        chip = f'<span class="chip {_g(g)}">{GRADE_ZH[g]}</span>' if g else ""
        cards.append(
            f'<div class="card" data-unit="{html.escape(u.id)}">'
            f"{qr_svg(unit_url(public_url, u.qr_token), scale=4)}"
            f"<div><b>{html.escape(u.name)}</b> {chip}</div>"
            f'<div class="muted">{html.escape(u.address)}</div></div>'
        )
    body = f'<h1 class="sheet-title">{html.escape(title)}</h1><div class="sheet">{"".join(cards)}</div>'
    return _page(title, body)


def public_html(u: UnitCodeRow, console_url: str) -> str:
    """What anyone who scans the code sees: the unit's name, and what it chose to show (its
    address, its grade, an emergency contact), nothing else.

    An inspector signed in to the console follows the link to the unit's full page.
    """
    shown = set(u.public_fields)
    g = grade_of(u) if "grade" in shown else None
    zh, en = GRADE_WORDS[g] if g else ("尚未评定", "not graded yet")
    colour_word = f"{GRADE_ZH[g]}色" if g else "—"
    since = f"评定于 {u.grade_since:%Y-%m-%d}" if u.grade_since and g else ""
    band = (
        f'<div class="band"><div class="big">{colour_word}</div><div>{zh} ({en})</div></div>'
        if "grade" in shown
        else '<div class="band"><div>一店一码 · unit code</div></div>'
    )
    address = (
        f'<div class="muted address">{html.escape(u.address)}</div>'
        if "address" in shown and u.address
        else ""
    )
    contact = (
        f'<p class="contact">应急联系 Emergency contact: {html.escape(u.public_contact)}</p>'
        if "emergency_contact" in shown and u.public_contact
        else ""
    )
    body = f"""<div class="notice public {_g(g)}" data-grade="{(u.grade or "") if g else ""}">
{band}
<h1>{html.escape(u.name)}</h1>{address}
<p class="muted">{since}</p>{contact}
<p><a href="{html.escape(console_url)}">检查人员登录查看 · Inspectors: open in the console</a></p>
</div>"""
    return _page(u.name, body)
