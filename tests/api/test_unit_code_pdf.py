"""一店一码 on paper: the PDF notices and sheets, read back (text, pages, embedded font, the QR
image decoded) and opened as a phone that scans them would."""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pypdf
import zxingcpp
from aiohttp.test_utils import TestClient, TestServer
from reportlab.lib.pagesizes import A4, A5

from api.app import build_app
from devices.records import UnitRecord
from store.registry_import import upsert_units
from supervision.unit_code_pdf import find_font
from tests.api.conftest import Seeded, api_options, auth
from tests.conftest import Endpoints

Client = TestClient[Any, Any]
PUBLIC = "http://127.0.0.1:8080"  # ApiOptions' default public_url


async def _pdf(client: Client, path: str, token: str) -> pypdf.PdfReader:
    r = await client.get(path, headers=auth(token))
    assert r.status == 200, await r.text()
    assert r.content_type == "application/pdf"
    assert "filename*=UTF-8''" in r.headers["Content-Disposition"]
    return pypdf.PdfReader(io.BytesIO(await r.read()))


def _codes(page: pypdf.PageObject) -> list[str]:
    """The URLs of every QR image on the page, as a phone's reader decodes them."""
    found = []
    for img in page.images:
        for code in zxingcpp.read_barcodes(img.image):
            assert code.format == zxingcpp.BarcodeFormat.QRCode
            found.append(code.text)
    return found


def _embedded_fonts(reader: pypdf.PdfReader) -> set[str]:
    """Names of the fonts whose glyphs travel in the file (FontFile2: TrueType)."""
    names = set()
    for page in reader.pages:
        resources = page["/Resources"].get_object()
        assert isinstance(resources, pypdf.generic.DictionaryObject)
        fonts = resources["/Font"].get_object()
        assert isinstance(fonts, pypdf.generic.DictionaryObject)
        for ref in fonts.values():
            font = ref.get_object()
            desc = font.get("/FontDescriptor")
            if desc is not None and "/FontFile2" in desc.get_object():
                names.add(str(font["/BaseFont"]))
    return names


def _tokens(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return dict(conn.execute("SELECT id, qr_token FROM units").fetchall())


async def test_a_units_notice_pdf_scans_to_its_public_page(client: Client, seeded: Seeded) -> None:
    """One A5 page: the grade in Chinese, the unit, its reasons, the font embedded; the code on
    it decodes to the unit's address, which opens that unit's public page without a token."""
    op = seeded.tokens["operator"]
    await client.post("/api/v1/units/u1/grade", headers=auth(op))
    reader = await _pdf(client, "/api/v1/units/u1/notice.pdf", op)
    assert len(reader.pages) == 1
    page = reader.pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == tuple(
        round(x) for x in A5
    )
    text = page.extract_text()
    assert "黄色" in text and "Riverside Mall" in text and "1起火警尚未核实" in text
    assert _embedded_fonts(reader), "the CJK font must travel in the file"
    (url,) = _codes(page)
    assert url == f"{PUBLIC}/u/{_tokens(seeded.dsn)['u1']}"
    public = await (await client.get(url.removeprefix(PUBLIC))).text()
    assert "Riverside Mall" in public and "#/unit/u1" in public


async def test_a_districts_sheet_and_notices_hold_each_unit_once(
    client: Client, seeded: Seeded
) -> None:
    """Fourteen shops in D1 beside the seed: the sheet is two A4 pages (12 a page) whose codes
    are exactly D1's, each decoding to its own unit; the notices are one page a unit; a
    district's PDF holds nobody from another."""
    shops = [
        UnitRecord(
            id=f"shop{i:02d}", name=f"春熙路{i}号小吃店", address=f"春熙路{i}号", district="D1"
        )
        for i in range(14)
    ]
    with psycopg.connect(seeded.dsn, autocommit=True) as conn, conn.transaction():
        upsert_units(conn, shops)
    tokens = _tokens(seeded.dsn)
    d1 = {uid for uid in tokens if uid.startswith("shop")} | {"u1"}
    op = seeded.tokens["operator"]

    sheet = await _pdf(client, "/api/v1/units/codes.pdf?district=D1", op)
    assert len(sheet.pages) == 2
    assert (
        round(float(sheet.pages[0].mediabox.width)),
        round(float(sheet.pages[0].mediabox.height)),
    ) == tuple(round(x) for x in A4)
    urls = [u for p in sheet.pages for u in _codes(p)]
    assert sorted(urls) == sorted(f"{PUBLIC}/u/{tokens[uid]}" for uid in d1)
    text = "".join(p.extract_text() for p in sheet.pages)
    assert "春熙路13号小吃店" in text and "No. 3 School" not in text

    notices = await _pdf(client, "/api/v1/units/notices.pdf?district=D1", op)
    assert len(notices.pages) == len(d1)
    for p in notices.pages:
        assert len(_codes(p)) == 1

    other = await _pdf(client, "/api/v1/units/codes.pdf?district=D2", op)
    assert [u for p in other.pages for u in _codes(p)] == [f"{PUBLIC}/u/{tokens['u2']}"]


async def test_pdfs_keep_to_the_tokens_units(client: Client, seeded: Seeded) -> None:
    """A token limited to u1 gets u1 alone on a sheet and a 404 for u2's notice; no token, 401."""
    limited = seeded.tokens["operator_u1"]
    sheet = await _pdf(client, "/api/v1/units/codes.pdf", limited)
    assert [u for p in sheet.pages for u in _codes(p)] == [
        f"{PUBLIC}/u/{_tokens(seeded.dsn)['u1']}"
    ]
    r = await client.get("/api/v1/units/u2/notice.pdf", headers=auth(limited))
    assert r.status == 404
    assert (await client.get("/api/v1/units/codes.pdf")).status == 401


async def test_without_a_cjk_font_the_pdfs_say_what_to_install(
    db: Endpoints, seeded: Seeded
) -> None:
    """A server with no TrueType CJK font answers 503 naming the setting and the package; the
    HTML notice still works."""
    async with TestClient(TestServer(build_app(api_options(db, pdf_font=None)))) as c:
        r = await c.get("/api/v1/units/u1/notice.pdf", headers=auth(seeded.tokens["operator"]))
        assert r.status == 503
        body = await r.json()
        assert body["error"] == "no_pdf_font"
        assert "api.pdf_font" in body["message"] and "fonts-wqy-microhei" in body["message"]
        html = await c.get("/api/v1/units/u1/notice", headers=auth(seeded.tokens["operator"]))
        assert html.status == 200


def test_the_set_up_installs_a_font_the_pdf_writer_can_embed() -> None:
    """`make test` and `make demo` install fonts-wqy-microhei: the default finds it."""
    font = find_font()
    assert font is not None and font.name == "wqy-microhei.ttc", font
