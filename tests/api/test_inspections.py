"""Inspections against a unit's code (扫码检查) through the API.

The unhappy paths first: a checklist with the exits skipped, a sticker of the wrong shop, the
phone that sends the same inspection twice over a dropping 4G link (one after the other and
both at once), an inspector outside their units, a role that may not inspect (hazards:act:
inspectors, supervisors, the control room). Then the round
trip: the code scanned from the unit's QR, the checklist answered, the failed items become
hazards of the loop with their deadlines, and the per-inspector counts say what was done.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from typing import Any

import psycopg
import zxingcpp
from aiohttp.test_utils import TestClient
from PIL import Image

from store import tokens as store_tokens
from supervision.inspections import load_checklist
from tests.api.conftest import Seeded, auth

Client = TestClient[Any, Any]
PUBLIC = "http://127.0.0.1:8080"  # ApiOptions' default public_url
ITEMS = [i.id for i in load_checklist().items]


def _tokens(seeded: Seeded) -> dict[str, str]:
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        return {
            name: store_tokens.create_token(conn, label, role, units)[1]
            for name, label, role, units in (
                ("zhao", "Grid worker Zhao", "inspector", ("u1",)),
                ("qian", "Grid worker Qian", "inspector", ("u2",)),
                ("sun", "Supervisor Sun", "supervisor", ()),
            )
        }


def _answers(failed: dict[str, str] | None = None, skip: str | None = None) -> list[dict[str, Any]]:
    failed = failed or {}
    return [
        {"item": i, "ok": i not in failed, "note": failed.get(i, "")} for i in ITEMS if i != skip
    ]


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 (test's own)
    assert row is not None
    return int(row[0])


async def _scan(client: Client, token: str, unit_id: str) -> str:
    """What a phone reads off the unit's printed code: its <public_url>/u/<code>."""
    r = await client.get(f"/api/v1/units/{unit_id}/qr.png", headers=auth(token))
    (found,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(await r.read())))
    assert found.text.startswith(f"{PUBLIC}/u/")
    return found.text.rsplit("/", 1)[1]


async def test_an_inspection_must_answer_every_item_and_match_the_sticker(
    client: Client, seeded: Seeded
) -> None:
    """Skipped exits, an item not on the checklist, an item twice, another shop's code: 422
    saying what is wrong, and nothing is recorded (no inspection, no hazard)."""
    t = _tokens(seeded)
    hazards_before = _count(seeded.dsn, "hazards")
    path = "/api/v1/units/u1/inspections"
    r = await client.post(
        path, json={"results": _answers(skip="exits_clear")}, headers=auth(t["zhao"])
    )
    assert r.status == 422 and "not answered: exits_clear" in (await r.json())["message"]
    extra = [*_answers(), {"item": "roof_garden", "ok": True}]
    r = await client.post(path, json={"results": extra}, headers=auth(t["zhao"]))
    assert r.status == 422 and "roof_garden is not on checklist" in (await r.json())["message"]
    twice = [*_answers(), {"item": "wiring", "ok": False}]
    r = await client.post(path, json={"results": twice}, headers=auth(t["zhao"]))
    assert r.status == 422 and "wiring is answered twice" in (await r.json())["message"]
    # The sticker on the door is the school's: the inspector is at the wrong shop.
    admin = seeded.tokens["admin"]
    wrong = await _scan(client, admin, "u2")
    r = await client.post(
        path, json={"results": _answers(), "code": wrong}, headers=auth(t["zhao"])
    )
    assert r.status == 422 and "not unit u1's" in (await r.json())["message"]
    assert _count(seeded.dsn, "inspections") == 0
    assert _count(seeded.dsn, "hazards") == hazards_before


async def test_roles_and_units_hold(client: Client, seeded: Seeded) -> None:
    """An inspector outside their units gets a 404 (the unit is not theirs to know); an
    analyst (reads hazards, reports none) may not inspect: 403; no token, 401. Lists keep to
    the units."""
    t = _tokens(seeded)
    body = {"results": _answers()}
    r = await client.post("/api/v1/units/u2/inspections", json=body, headers=auth(t["zhao"]))
    assert r.status == 404
    r = await client.post(
        "/api/v1/units/u1/inspections", json=body, headers=auth(seeded.tokens["analyst"])
    )
    assert r.status == 403
    assert (await client.post("/api/v1/units/u1/inspections", json=body)).status == 401
    r = await client.post("/api/v1/units/u2/inspections", json=body, headers=auth(t["qian"]))
    assert r.status == 201
    mine = await (await client.get("/api/v1/inspections", headers=auth(t["zhao"]))).json()
    assert mine["items"] == [] and mine["by_inspector"] == []
    theirs = await (await client.get("/api/v1/inspections", headers=auth(t["qian"]))).json()
    assert [i["unit_id"] for i in theirs["items"]] == ["u2"]


async def test_a_resent_inspection_is_recorded_once_with_its_hazards_once(
    client: Client, seeded: Seeded
) -> None:
    """The phone sends the same submission again (its answer lost in a basement), and once
    more twice at the same moment: one inspection, one hazard per failed item; the resends
    answer 200 with the first."""
    t = _tokens(seeded)
    hazards_before = _count(seeded.dsn, "hazards")
    body = {
        "results": _answers({"extinguishers": "2 of 3 past their date"}),
        "client_ref": "phone-7f3a-0001",
    }
    path = "/api/v1/units/u1/inspections"
    first = await client.post(path, json=body, headers=auth(t["zhao"]))
    assert first.status == 201
    again = await client.post(path, json=body, headers=auth(t["zhao"]))
    assert again.status == 200
    a, b = await first.json(), await again.json()
    assert (a["created"], b["created"]) == (True, False)
    assert a["inspection"] == b["inspection"]
    body2 = {**body, "client_ref": "phone-7f3a-0002"}
    both = await asyncio.gather(
        *(client.post(path, json=body2, headers=auth(t["zhao"])) for _ in range(2))
    )
    assert sorted(r.status for r in both) == [200, 201]
    assert _count(seeded.dsn, "inspections") == 2
    assert _count(seeded.dsn, "hazards") == hazards_before + 2


async def test_a_scanned_inspection_becomes_hazards_of_the_loop_and_counts(
    client: Client, seeded: Seeded
) -> None:
    """Zhao scans u1's code and fails two items: the inspection is marked scanned, each
    failure is a hazard found by Zhao with the checklist's category and severity and its
    deadline (major: 3 days, general: 15), in the unit's hazards; once the supervisor closes
    one, Zhao's counts say 1 of 2 closed. An inspection without the code is not 'scanned'."""
    t = _tokens(seeded)
    code = await _scan(client, t["zhao"], "u1")
    before = dt.datetime.now(dt.UTC)
    r = await client.post(
        "/api/v1/units/u1/inspections",
        json={
            "results": _answers(
                {"exits_clear": "卷帘门前堆放纸箱", "extinguishers": "压力表指针在红区"}
            ),
            "code": code,
            "comment": "店主在场",
        },
        headers=auth(t["zhao"]),
    )
    assert r.status == 201, await r.text()
    got = (await r.json())["inspection"]
    assert (got["scanned"], got["failed"], got["inspector"]) == (True, 2, "Grid worker Zhao")
    assert [x["item"] for x in got["results"]] == ITEMS  # in the checklist's order
    assert len(got["hazard_ids"]) == 2

    listed = await client.get("/api/v1/hazards?unit=u1", headers=auth(t["zhao"]))
    hazards = {h["id"]: h for h in (await listed.json())["items"]}
    made = [hazards[i] for i in got["hazard_ids"]]
    exits, extinguishers = sorted(made, key=lambda h: h["category"])
    assert (exits["category"], exits["severity"]) == ("blocked_exit", "major")
    assert "安全出口" in exits["description"] and "卷帘门前堆放纸箱" in exits["description"]
    assert (extinguishers["category"], extinguishers["severity"]) == ("fire_equipment", "general")
    for h, days in ((exits, 3), (extinguishers, 15)):
        assert h["found_by"] == "Grid worker Zhao" and h["state"] == "found"
        due = dt.datetime.fromisoformat(h["deadline"]) - before
        assert dt.timedelta(days=days) <= due < dt.timedelta(days=days, minutes=1), due

    # Walk the exits hazard to 销案 (the unit cleared the boxes).
    sup = auth(t["sun"])
    for action in ("notify", "rectify", "submit", "review", "close"):
        step = await client.post(
            f"/api/v1/hazards/{exits['id']}/{action}", json={"comment": action}, headers=sup
        )
        assert step.status == 200, (action, await step.text())
    plain = await client.post(
        "/api/v1/units/u1/inspections", json={"results": _answers()}, headers=auth(t["zhao"])
    )
    assert (await plain.json())["inspection"]["scanned"] is False

    out = await (await client.get("/api/v1/inspections?unit=u1", headers=sup)).json()
    assert [i["scanned"] for i in out["items"]] == [False, True]  # newest first
    (zhao,) = out["by_inspector"]
    assert zhao == {
        "inspector": "Grid worker Zhao",
        "inspections": 2,
        "scanned": 1,
        "units": 1,
        "failed_items": 2,
        "hazards": 2,
        "hazards_closed": 1,
    }
    # The hazards counted per finder: what Zhao found, and how much of it is rectified.
    per = await (await client.get("/api/v1/hazards/counts?group=finder", headers=sup)).json()
    row = next(r for r in per["rows"] if r["key"] == "Grid worker Zhao")
    assert (row["found"], row["open"], row["closed"]) == (2, 1, 1)
    checklist = await (await client.get("/api/v1/inspections/checklist", headers=sup)).json()
    assert [i["id"] for i in checklist["items"]] == ITEMS
    assert checklist["items"][0]["zh-CN"].startswith("安全出口")
