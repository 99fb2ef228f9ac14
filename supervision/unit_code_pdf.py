"""一店一码 on paper: 四色告知牌 and sheets of codes as PDF, with a CJK font embedded.

A print shop or a grid worker's printer takes a PDF as it is, which the HTML pages cannot
promise (margins, fonts, a browser's print dialog). The font is embedded (subset), so the
sheet prints the same on a machine with no Chinese font. reportlab reads TrueType outlines
only: WenQuanYi Micro Hei (Debian's fonts-wqy-microhei, which the set-up installs) works; the
OpenType/CFF Noto Sans CJK does not. The QR code goes in as a lossless PNG at whole pixels
per module, so that it scans from paper and can be read back from the file.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

from reportlab.lib.pagesizes import A4, A5
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas

from store.units import UnitCodeRow
from supervision.model import GRADE_ZH, Grade
from supervision.unit_code import GRADE_COLOURS, GRADE_WORDS, grade_of, qr_png, unit_url

# Where Debian's packages put TrueType CJK fonts, the set-up's first.
FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/arphic/uming.ttc"),
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
)
FONT_FIX = (
    "a TrueType CJK font (.ttf or .ttc), e.g. /usr/share/fonts/truetype/wqy/wqy-microhei.ttc "
    "from Debian's fonts-wqy-microhei; OpenType/CFF fonts such as Noto Sans CJK cannot be "
    "embedded by the PDF writer"
)


class FontError(ValueError):
    """A font the PDF writer cannot embed, with the reason and the fix."""


def find_font(configured: Path | None = None) -> Path | None:
    """The configured font, else the first TrueType CJK font installed, else None."""
    if configured is not None:
        return configured
    return next((p for p in FONT_CANDIDATES if p.is_file()), None)


@functools.lru_cache(maxsize=4)
def _font(path: str) -> str:
    name = f"cjk-{abs(hash(path)):x}"
    try:
        pdfmetrics.registerFont(TTFont(name, path, subfontIndex=0))
    except (OSError, TTFError) as exc:
        raise FontError(f"{path}: {exc}; use {FONT_FIX}") from exc
    return name


def check_font(path: Path) -> None:
    """Load the font once, so that a font the writer cannot use stops the start."""
    if not path.is_file():
        raise FontError(f"{path} is not a file; use {FONT_FIX}")
    _font(str(path))


def _wrap(text: str, font: str, size: float, width: float) -> Iterator[str]:
    """Lines of `text` no wider than `width`: by character, as Chinese has no spaces."""
    line = ""
    for ch in text:
        if pdfmetrics.stringWidth(line + ch, font, size) > width and line:
            yield line
            line = ch.lstrip()
        else:
            line += ch
    if line:
        yield line


def _fit(text: str, font: str, size: float, width: float) -> str:
    """`text` cut with an ellipsis to fit one line."""
    if pdfmetrics.stringWidth(text, font, size) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"


def _qr(c: Canvas, url: str, x: float, y: float, side: float) -> None:
    # Whole pixels per module, no smoothing: a printer's dithering must not blur the modules.
    c.drawImage(ImageReader(io.BytesIO(qr_png(url, scale=10))), x, y, side, side)


def _new(pagesize: tuple[float, float], title: str) -> tuple[io.BytesIO, Canvas]:
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=pagesize, pageCompression=1)
    c.setTitle(title)
    c.setAuthor("firesentry")
    c.setCreator("firesentry")
    return buf, c


def _notice_page(c: Canvas, font: str, u: UnitCodeRow, public_url: str, today: dt.date) -> None:
    w, h = A5
    g = grade_of(u)
    colour = GRADE_COLOURS[g] if g else "#777777"
    ink = "#111111" if g == Grade.YELLOW else "#ffffff"
    zh, en = GRADE_WORDS[g] if g else ("尚未评定", "not graded yet")
    margin = 8 * mm
    c.setStrokeColor(colour)
    c.setLineWidth(3 * mm)
    c.rect(margin, margin, w - 2 * margin, h - 2 * margin)
    inner = margin + 6 * mm
    top = h - inner
    band = 30 * mm
    c.setFillColor(colour)
    c.rect(inner, top - band, w - 2 * inner, band, stroke=0, fill=1)
    c.setFillColor(ink)
    c.setFont(font, 34)
    c.drawCentredString(w / 2, top - 17 * mm, f"{GRADE_ZH[g]}色" if g else "—")
    c.setFont(font, 11)
    c.drawCentredString(w / 2, top - 25 * mm, f"消防安全风险等级 · {zh} ({en})")
    c.setFillColor("#111111")
    text_w = w - 2 * inner
    y = top - band - 11 * mm
    c.setFont(font, 18)
    for line in list(_wrap(u.name, font, 18, text_w))[:2]:
        c.drawString(inner, y, line)
        y -= 8 * mm
    c.setFillColor("#555555")
    c.setFont(font, 9.5)
    c.drawString(inner, y, _fit(f"{u.district} · {u.address}", font, 9.5, text_w))
    y -= 5.5 * mm
    since = f"评定于 {u.grade_since:%Y-%m-%d} · " if u.grade_since else ""
    c.drawString(inner, y, f"四色风险告知牌 · {since}打印于 {today:%Y-%m-%d}")
    y -= 8 * mm
    c.setFillColor("#111111")
    reasons = [str(r.get("zh-CN", "")) for r in u.reasons] or ["无风险因素"]
    c.setFont(font, 10.5)
    qr_side = 62 * mm
    floor = inner + qr_side + 12 * mm
    for reason in reasons:
        for i, line in enumerate(_wrap(reason, font, 10.5, text_w - 5 * mm)):
            if y < floor:
                break
            c.drawString(inner + (5 * mm if i else 0), y, ("• " if i == 0 else "") + line)
            y -= 5.5 * mm
    _qr(c, unit_url(public_url, u.qr_token), (w - qr_side) / 2, inner + 8 * mm, qr_side)
    c.setFillColor("#555555")
    c.setFont(font, 8.5)
    c.drawCentredString(
        w / 2,
        inner + 3 * mm,
        "扫码查看本单位消防安全信息 · Scan for this unit's fire-safety record",
    )


def notices_pdf(
    units: Sequence[UnitCodeRow], public_url: str, today: dt.date, font_path: Path, title: str
) -> bytes:
    """四色告知牌 as A5 pages, one per unit, in the order given."""
    font = _font(str(font_path))
    buf, c = _new(A5, title)
    for u in units:
        _notice_page(c, font, u, public_url, today)
        c.showPage()
    if not units:
        c.setFont(font, 12)
        c.drawString(20 * mm, A5[1] - 30 * mm, "没有单位 · no units")
        c.showPage()
    c.save()
    return buf.getvalue()


# A sheet of codes: three across, four down on A4; each card is cut out and stuck up.
_COLS, _ROWS = 3, 4


def sheet_pdf(
    units: Sequence[UnitCodeRow], public_url: str, today: dt.date, font_path: Path, title: str
) -> bytes:
    """Sheets of QR codes (A4, 12 a page): name, grade and address under each code."""
    font = _font(str(font_path))
    w, h = A4
    buf, c = _new(A4, title)
    margin = 10 * mm
    head = 12 * mm
    card_w = (w - 2 * margin) / _COLS
    card_h = (h - 2 * margin - head) / _ROWS
    per_page = _COLS * _ROWS
    pages = max(1, -(-len(units) // per_page))
    for page in range(pages):
        c.setFillColor("#111111")
        c.setFont(font, 13)
        c.drawString(margin, h - margin - 6 * mm, _fit(title, font, 13, w - 2 * margin - 40 * mm))
        c.setFont(font, 8)
        c.drawRightString(w - margin, h - margin - 6 * mm, f"{today:%Y-%m-%d} · {page + 1}/{pages}")
        for i, u in enumerate(units[page * per_page : (page + 1) * per_page]):
            col, row = i % _COLS, i // _COLS
            x = margin + col * card_w
            y = h - margin - head - (row + 1) * card_h
            c.setStrokeColor("#999999")
            c.setLineWidth(0.5)
            c.setDash(2, 2)
            c.rect(x, y, card_w, card_h)
            c.setDash()
            side = min(card_w, card_h) - 22 * mm
            _qr(c, unit_url(public_url, u.qr_token), x + (card_w - side) / 2, y + 16 * mm, side)
            g = grade_of(u)
            name_w = card_w - 6 * mm - (9 * mm if g else 0)
            c.setFillColor("#111111")
            c.setFont(font, 10)
            name = _fit(u.name, font, 10, name_w)
            c.drawString(x + 3 * mm, y + 10 * mm, name)
            if g:
                chip_x = x + 3 * mm + pdfmetrics.stringWidth(name, font, 10) + 2 * mm
                c.setFillColor(GRADE_COLOURS[g])
                c.rect(chip_x, y + 9 * mm, 7 * mm, 4.5 * mm, stroke=0, fill=1)
                c.setFillColor("#111111" if g == Grade.YELLOW else "#ffffff")
                c.setFont(font, 9)
                c.drawCentredString(chip_x + 3.5 * mm, y + 10 * mm, GRADE_ZH[g])
            c.setFillColor("#555555")
            c.setFont(font, 7.5)
            c.drawString(x + 3 * mm, y + 5 * mm, _fit(u.address, font, 7.5, card_w - 6 * mm))
        c.showPage()
    c.save()
    return buf.getvalue()
