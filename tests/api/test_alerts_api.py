"""Alert endpoints: filters and pages, actions with the token as actor, silences, clear 400s."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import NOW, Seeded, auth

Client = TestClient[Any, Any]


async def _ids(client: Client, seeded: Seeded, query: str) -> list[int]:
    r = await client.get(f"/api/v1/alerts?{query}", headers=auth(seeded.tokens["operator"]))
    assert r.status == 200, await r.text()
    return [a["id"] for a in (await r.json())["items"]]


async def test_filters_narrow_the_list(client: Client, seeded: Seeded) -> None:
    """state (incl. open), severity, unit, district, device_type and from/to each filter."""
    a = seeded.alerts
    assert await _ids(client, seeded, "") == [
        a["wl_warning"],
        a["fire"],
        a["em_major"],
        a["old_closed"],
    ]
    assert await _ids(client, seeded, "state=open") == [a["wl_warning"], a["fire"], a["em_major"]]
    assert await _ids(client, seeded, "state=closed") == [a["old_closed"]]
    assert await _ids(client, seeded, "severity=critical,major") == [
        a["fire"],
        a["em_major"],
        a["old_closed"],
    ]
    assert await _ids(client, seeded, "severity=critical&severity=warning") == [
        a["wl_warning"],
        a["fire"],
    ]
    assert await _ids(client, seeded, "unit=u1") == [a["fire"], a["em_major"]]
    assert await _ids(client, seeded, "district=D2&state=open") == [a["wl_warning"]]
    assert await _ids(client, seeded, "device_type=user_transmission_device") == [a["fire"]]
    since = (NOW - dt.timedelta(minutes=25)).isoformat()
    assert await _ids(client, seeded, f"from={since.replace('+', '%2B')}") == [
        a["wl_warning"],
        a["fire"],
    ]
    until = int((NOW - dt.timedelta(days=1)).timestamp())
    assert await _ids(client, seeded, f"to={until}") == [a["old_closed"]]


async def test_cursor_pages_walk_the_whole_list(client: Client, seeded: Seeded) -> None:
    """limit with next_cursor returns every alert once, newest first, then no cursor."""
    h = auth(seeded.tokens["analyst"])
    seen: list[int] = []
    url = "/api/v1/alerts?limit=3"
    while True:
        page = await (await client.get(url, headers=h)).json()
        seen += [x["id"] for x in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"/api/v1/alerts?limit=3&cursor={page['next_cursor']}"
    assert seen == await _ids(client, seeded, "limit=100")
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "", "'from' must be before 'to'"),
        ("from=2026-01-01T00:00:00", "from", "timezone"),
        ("from=yesterday", "from", "datetime"),
        ("severity=urgent", "severity.0", "'critical'"),
        ("state=gone", "state.0", "'open'"),
        ("limit=0", "limit", "greater than or equal to 1"),
        ("cursor=zzz", "cursor", "not one this API returned"),
        ("colour=red", "colour", "unknown parameter"),
        ("unit=bad%20id", "unit", "pattern"),
    ],
)
async def test_bad_parameters_are_400_with_a_clear_message(
    client: Client, seeded: Seeded, query: str, field: str, words: str
) -> None:
    """A bad time range, value or unknown parameter is a 400 naming the field, never a 500."""
    r = await client.get(f"/api/v1/alerts?{query}", headers=auth(seeded.tokens["operator"]))
    assert r.status == 400
    body = await r.json()
    assert body["error"] == "bad_request"
    assert body["details"][0]["field"] == field
    assert words in body["details"][0]["message"] and words in body["message"]


async def test_detail_has_history_and_notifications(client: Client, seeded: Seeded) -> None:
    """GET /alerts/{id} returns the alert, its alert_events and its outbox rows; 404 otherwise."""
    h = auth(seeded.tokens["operator"])
    r = await client.get(f"/api/v1/alerts/{seeded.alerts['em_major']}", headers=h)
    d = await r.json()
    assert d["alert"]["rule_id"] == "residual_current_high"
    assert [e["kind"] for e in d["history"]] == ["opened"]
    assert d["notifications"] == []
    assert (await client.get("/api/v1/alerts/999999", headers=h)).status == 404
    assert (await client.get("/api/v1/alerts/abc", headers=h)).status == 404
    assert (await (await client.get("/api/v1/nope", headers=h)).json())["error"] == "not_found"


async def test_ack_resolve_close_record_the_token_name(client: Client, seeded: Seeded) -> None:
    """Actions change the state, record the token's name as actor, and refuse what cannot be."""
    h = auth(seeded.tokens["operator"])
    alert = seeded.alerts["em_major"]
    r = await client.post(f"/api/v1/alerts/{alert}/ack", headers=h, json={"comment": "on it"})
    assert r.status == 200 and (await r.json())["state"] == "acknowledged"
    r = await client.post(f"/api/v1/alerts/{alert}/ack", headers=h)
    assert r.status == 409 and "already acknowledged" in (await r.json())["message"]
    r = await client.post(f"/api/v1/alerts/{alert}/resolve", headers=h, json={})
    assert (await r.json())["state"] == "resolved"
    r = await client.post(f"/api/v1/alerts/{alert}/close", headers=h, json={"comment": "fixed"})
    assert (await r.json())["state"] == "closed"
    d = await (await client.get(f"/api/v1/alerts/{alert}", headers=h)).json()
    assert [(e["kind"], e["actor"]) for e in d["history"]] == [
        ("opened", "engine"),
        ("acknowledged", "Test operator"),
        ("resolved", "Test operator"),
        ("closed", "Test operator"),
    ]
    assert d["history"][1]["comment"] == "on it"


async def test_fire_alarm_close_needs_verification(client: Client, seeded: Seeded) -> None:
    """A fire alarm closes only when verified; a false alarm needs a cause (400 before the DB)."""
    h = auth(seeded.tokens["operator"])
    url = f"/api/v1/alerts/{seeded.alerts['fire']}/close"
    r = await client.post(url, headers=h, json={})
    assert r.status == 409 and "verify" in (await r.json())["message"]
    r = await client.post(url, headers=h, json={"verification": "false_alarm"})
    assert r.status == 400 and "needs a cause" in (await r.json())["message"]
    r = await client.post(url, headers=h, json={"verification": "confirmed_fire", "cause": "test"})
    assert r.status == 400
    r = await client.post(url, headers=h, data=b"{not json")
    assert r.status == 400 and (await r.json())["message"] == "the body is not valid JSON"
    r = await client.post(
        url, headers=h, json={"verification": "false_alarm", "cause": "dust_steam"}
    )
    body = await r.json()
    assert body["state"] == "closed" and body["false_alarm_cause"] == "dust_steam"


async def test_silence_is_created_by_the_token(client: Client, seeded: Seeded) -> None:
    """POST /silences mutes a unit for a while (201, an admin: a unit-wide silence covers fire
    alarms); a missing target or unit is refused."""
    h = auth(seeded.tokens["admin"])
    r = await client.post(
        "/api/v1/silences", headers=h, json={"unit_id": "u1", "duration_min": 90, "reason": "drill"}
    )
    assert r.status == 201
    s = await r.json()
    assert s["author"] == "Test admin" and s["unit_id"] == "u1"
    span = dt.datetime.fromisoformat(s["ends_at"]) - dt.datetime.fromisoformat(s["starts_at"])
    assert span == dt.timedelta(minutes=90)
    r = await client.post("/api/v1/silences", headers=h, json={"duration_min": 5, "reason": "x"})
    assert r.status == 400 and "unit_id, device_id or rule_id" in (await r.json())["message"]
    r = await client.post(
        "/api/v1/silences", headers=h, json={"unit_id": "u9", "duration_min": 5, "reason": "x"}
    )
    assert r.status == 404
    r = await client.post(
        "/api/v1/silences",
        headers=h,
        json={"device_id": "u1-em", "reason": "x", "ends_at": "2000-01-01T00:00:00Z"},
    )
    assert r.status == 400 and "end after it starts" in (await r.json())["message"]
