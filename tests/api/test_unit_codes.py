"""一店一码 and grades through the API: the QR round trip, what the public sees, scope, notices."""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pytest
import zxingcpp
from aiohttp.test_utils import TestClient
from PIL import Image

from devices.records import UnitRecord
from store.registry_import import upsert_units
from tests.api.conftest import Seeded, auth

Client = TestClient[Any, Any]
PUBLIC = "http://127.0.0.1:8080"  # ApiOptions' default public_url


def qr_token(seeded: Seeded, unit_id: str) -> str:
    """The unit's code as the registry holds it."""
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT qr_token FROM units WHERE id = %s", (unit_id,)).fetchone()
    assert row is not None
    return str(row[0])


async def test_qr_round_trip_opens_the_units_public_page(client: Client, seeded: Seeded) -> None:
    """The PNG decodes (zxing-cpp) to <public_url>/u/<code>, which shows the unit without a token."""
    r = await client.get("/api/v1/units/u1/qr.png", headers=auth(seeded.tokens["operator"]))
    assert r.status == 200 and r.content_type == "image/png"
    (found,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(await r.read())))
    assert found.format == zxingcpp.BarcodeFormat.QRCode
    assert found.text == f"{PUBLIC}/u/{qr_token(seeded, 'u1')}"

    page = await client.get(found.text.removeprefix(PUBLIC))  # no Authorization header
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    assert "Riverside Mall" in text and "#/unit/u1" in text
    # The public sees name, address and grade: no alerts, devices, contacts or reasons.
    for private in ("u1-em", "u1-utd", "residual", "+86", "fire_alarm"):
        assert private not in text, private


async def test_public_page_after_grading_shows_the_grade(client: Client, seeded: Seeded) -> None:
    """Once graded, the public page and the notice show the grade in its colour."""
    graded = await client.post("/api/v1/units/u1/grade", headers=auth(seeded.tokens["operator"]))
    assert graded.status == 200, await graded.text()
    body = await graded.json()
    # The seed's open fire alarm (15) and residual-current alert (5): yellow, 20.
    assert (body["grade"], body["score"]) == ("yellow", 20)
    assert [c["trigger"] for c in body["changes"]] == ["request:Test operator"]
    page = await (await client.get(f"/u/{qr_token(seeded, 'u1')}")).text()
    assert 'data-grade="yellow"' in page and "黄色" in page
    notice = await client.get("/api/v1/units/u1/notice", headers=auth(seeded.tokens["operator"]))
    text = await notice.text()
    assert notice.status == 200 and 'data-grade="yellow"' in text and "<svg" in text
    assert "1起火警尚未核实" in text  # the reasons, for the people at the unit


async def test_the_public_page_shows_only_what_the_unit_chose(
    client: Client, seeded: Seeded
) -> None:
    """A unit that shows only an emergency contact: its name and that contact, no address and
    no grade (not even in the page's markup)."""
    await client.post("/api/v1/units/u1/grade", headers=auth(seeded.tokens["operator"]))
    with psycopg.connect(seeded.dsn, autocommit=True) as conn, conn.transaction():
        upsert_units(
            conn,
            [
                UnitRecord(
                    id="u1",
                    name="Riverside Mall",
                    address="1 River Rd",
                    public=["emergency_contact"],
                    public_contact="duty room 028-8888 1119",
                )
            ],
        )
    page = await (await client.get(f"/u/{qr_token(seeded, 'u1')}")).text()
    assert "Riverside Mall" in page and "duty room 028-8888 1119" in page
    assert 'data-grade=""' in page and "黄色" not in page
    assert "1 River Rd" not in page
    # By default (address and grade) the contact is not shown, even when one is given.
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute("UPDATE units SET public_fields = '{address,grade}' WHERE id = 'u1'")
    page = await (await client.get(f"/u/{qr_token(seeded, 'u1')}")).text()
    assert "duty room" not in page and "黄色" in page and "1 River Rd" in page
    with (
        psycopg.connect(seeded.dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        conn.execute("UPDATE units SET public_fields = '{phone_numbers}' WHERE id = 'u1'")


async def test_unknown_and_malformed_codes_are_404(client: Client, seeded: Seeded) -> None:
    """A code that is not a unit's (or not a code at all) finds nothing."""
    for path in ("/u/" + "0" * 32, "/u/not-a-token", "/u/" + qr_token(seeded, "u1").upper()):
        r = await client.get(path)
        assert r.status == 404, path


async def test_scope_limits_codes_notices_and_grades(client: Client, seeded: Seeded) -> None:
    """A token limited to u1 gets none of u2's code, notice or grade, and only u1 on a sheet."""
    limited = auth(seeded.tokens["operator_u1"])
    for method, path in (
        ("GET", "/api/v1/units/u2/qr.png"),
        ("GET", "/api/v1/units/u2/notice"),
        ("GET", "/api/v1/units/u2/grades"),
        ("POST", "/api/v1/units/u2/grade"),
    ):
        r = await client.request(method, path, headers=limited)
        assert r.status == 404, path
    sheet = await (await client.get("/api/v1/units/codes", headers=limited)).text()
    assert 'data-unit="u1"' in sheet and 'data-unit="u2"' not in sheet
    assert (await client.get("/api/v1/units/codes")).status == 401


async def test_district_sheet_holds_that_districts_units(client: Client, seeded: Seeded) -> None:
    """?district= narrows the sheet; every card carries its unit's code."""
    r = await client.get("/api/v1/units/codes?district=D2", headers=auth(seeded.tokens["operator"]))
    text = await r.text()
    assert r.status == 200 and 'data-unit="u2"' in text and 'data-unit="u1"' not in text
    assert text.count("<svg") == 1


async def test_grades_before_any_grading(client: Client, seeded: Seeded) -> None:
    """A unit never graded says so: no grade, no changes."""
    r = await client.get("/api/v1/units/u2/grades", headers=auth(seeded.tokens["operator"]))
    assert r.status == 200
    body = await r.json()
    assert (body["grade"], body["changes"], body["reasons"]) == (None, [], [])
