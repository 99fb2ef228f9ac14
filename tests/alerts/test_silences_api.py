"""Silences over the API: one cap on every end, critical scopes for admins only, list/show/end."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient

from tests.api import conftest as api_conftest
from tests.api.conftest import Seeded, auth

Client = TestClient[Any, Any]
# The API fixtures (a seeded database, tokens of every role, the app on a test server).
seeded = api_conftest.seeded
client = api_conftest.client
URL = "/api/v1/silences"


def _in(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).isoformat()


def _count(seeded: Seeded) -> int:
    with psycopg.connect(seeded.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM silences").fetchone()
    assert row is not None
    return int(row[0])


async def _post(client: Client, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = await client.post(URL, headers=auth(token), json=body)
    return r.status, await r.json()


async def test_unit_operator_cannot_silence_fire_alarms_until_9999(
    client: Client, seeded: Seeded
) -> None:
    """The audited exploit: a unit operator silencing fire_alarm until 9999-12-31 is refused
    (the end is capped), and so is the same silence for an hour (fire alarms need an admin)."""
    op = seeded.tokens["operator_u1"]
    exploit = {
        "unit_id": "u1",
        "rule_id": "fire_alarm",
        "ends_at": "9999-12-31T00:00:00Z",
        "reason": "panel maintenance",
    }
    status, body = await _post(client, op, exploit)
    assert status == 400, body
    assert body["details"][0]["field"] == "ends_at" and "90 days" in body["message"]
    status, body = await _post(client, op, {**exploit, "ends_at": _in(hours=1)})
    assert status == 403, body
    assert "fire_alarm" in body["message"] and "admin" in body["message"]
    assert _count(seeded) == 0


async def test_one_cap_for_every_way_of_giving_an_end(client: Client, seeded: Seeded) -> None:
    """duration_min, ends_at and a late starts_at all hit the same 90-day cap, named by field;
    an end in the past is refused; exactly 90 days is allowed."""
    admin = seeded.tokens["admin"]
    base = {"unit_id": "u1", "reason": "renovation"}
    for extra, field in (
        ({"duration_min": 90 * 24 * 60 + 1}, "duration_min"),
        ({"duration_min": 10**15}, "duration_min"),
        ({"ends_at": _in(days=91)}, "ends_at"),
        ({"ends_at": "9999-12-31T00:00:00Z"}, "ends_at"),
        ({"starts_at": _in(days=89), "duration_min": 3 * 24 * 60}, "duration_min"),
        ({"ends_at": "2000-01-01T00:00:00Z"}, "ends_at"),
        ({"ends_at": _in(hours=1), "duration_min": 60}, "ends_at"),
        ({}, "ends_at"),
    ):
        status, body = await _post(client, admin, {**base, **extra})
        assert status == 400, (extra, body)
        assert body["details"][0]["field"] == field, (extra, body)
    status, body = await _post(client, admin, {**base, "ends_at": "2000-01-01T00:00:00Z"})
    assert "in the past" in body["message"]
    assert _count(seeded) == 0
    status, body = await _post(client, admin, {**base, "duration_min": 90 * 24 * 60})
    assert status == 201, body
    span = dt.datetime.fromisoformat(body["ends_at"]) - dt.datetime.fromisoformat(
        body["created_at"]
    )
    assert dt.timedelta(days=89, hours=23) < span <= dt.timedelta(days=90)


async def test_scopes_that_cover_critical_alerts_need_an_admin_and_a_reason(
    client: Client, seeded: Seeded
) -> None:
    """An operator may silence one non-critical rule; a whole unit, a device with critical
    rules, or a critical rule needs an admin token and a reason that is not blank."""
    op, admin = seeded.tokens["operator"], seeded.tokens["admin"]
    end = {"duration_min": 120}
    for target in (
        {"unit_id": "u1"},
        {"device_id": "u1-em"},  # an electrical monitor has arc_fault (critical)
        {"unit_id": "u1", "rule_id": "arc_fault"},
        {"rule_id": "fire_alarm"},
    ):
        status, body = await _post(client, op, {**target, **end, "reason": "maintenance"})
        assert status == 403, (target, body)
        assert "admin" in body["message"]
    status, body = await _post(
        client, op, {"unit_id": "u1", "rule_id": "residual_current_high", **end, "reason": "work"}
    )
    assert status == 201 and body["covers_critical"] is False and body["author"] == "Test operator"
    status, body = await _post(client, op, {"device_id": "u2-wl", **end, "reason": "tank clean"})
    assert status == 403  # tank_level_critical is a critical rule of water-level devices
    status, body = await _post(client, admin, {"unit_id": "u1", **end, "reason": "   "})
    assert status == 400 and body["details"][0]["field"] == "reason"
    status, body = await _post(
        client, admin, {"unit_id": "u1", "rule_id": "no_such", **end, "reason": "x"}
    )
    assert status == 400 and body["details"][0]["field"] == "rule_id"
    status, body = await _post(
        client, admin, {"unit_id": "u1", **end, "reason": "panel maintenance"}
    )
    assert status == 201 and body["covers_critical"] is True and body["state"] == "active"


async def test_list_show_and_end_within_the_tokens_units(client: Client, seeded: Seeded) -> None:
    """A unit-scoped token lists, shows and ends only its units' silences; the end is recorded
    with who and when; ended silences leave the default list; analysts read but cannot end."""
    admin, op_u1 = seeded.tokens["admin"], seeded.tokens["operator_u1"]
    ids = {}
    for unit in ("u1", "u2"):
        status, body = await _post(
            client, admin, {"unit_id": unit, "duration_min": 60, "reason": f"work at {unit}"}
        )
        assert status == 201
        ids[unit] = body["id"]
    r = await client.get(URL, headers=auth(op_u1))
    assert r.status == 200
    assert [s["id"] for s in (await r.json())["items"]] == [ids["u1"]]
    r = await client.get(f"{URL}/{ids['u2']}", headers=auth(op_u1))
    assert r.status == 404
    r = await client.post(f"{URL}/{ids['u2']}/end", headers=auth(op_u1), json={})
    assert r.status == 404
    r = await client.get(f"{URL}/{ids['u1']}", headers=auth(op_u1))
    one = await r.json()
    assert r.status == 200 and one["reason"] == "work at u1" and one["author"] == "Test admin"
    r = await client.post(f"{URL}/{ids['u1']}/end", headers=auth(seeded.tokens["analyst"]), json={})
    assert r.status == 403
    r = await client.post(
        f"{URL}/{ids['u1']}/end", headers=auth(op_u1), json={"comment": "work done early"}
    )
    ended = await r.json()
    assert r.status == 200, ended
    assert ended["state"] == "ended" and ended["ended_by"] == "Test operator_u1"
    assert ended["end_comment"] == "work done early"
    at = dt.datetime.fromisoformat(ended["ended_at"])
    assert abs(at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    r = await client.post(f"{URL}/{ids['u1']}/end", headers=auth(op_u1), json={})
    assert r.status == 409
    r = await client.get(URL, headers=auth(admin))
    assert [s["id"] for s in (await r.json())["items"]] == [ids["u2"]]
    r = await client.get(f"{URL}?state=ended", headers=auth(seeded.tokens["analyst"]))
    assert [s["id"] for s in (await r.json())["items"]] == [ids["u1"]]
    r = await client.get(f"{URL}?state=bogus", headers=auth(admin))
    assert r.status == 400
