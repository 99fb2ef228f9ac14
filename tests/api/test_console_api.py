"""What the control-room console asks of the API: the stream's database health, rule names,
closed alerts with their history, contacts, the display role, statistics, a unit's events."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from alerts import actions
from api.app import build_app
from devices.catalog import EVENT_KIND_IDS, EventKind
from firesentry.cli import main
from firesentry.embedded import Endpoints
from rules.loader import load_rules
from store import tokens as store_tokens
from store.partitions import PartitionManager
from tests.api.conftest import NOW, Seeded, api_options, auth, open_alert
from tests.api.test_auth import _env
from tests.api.test_stream import next_event
from tests.e2e.test_supervision import DatabaseLink

Client = TestClient[Any, Any]


async def test_the_stream_says_when_the_database_goes_away_and_comes_back(
    db: Endpoints, seeded: Seeded
) -> None:
    """`ready` says the database is ok; an outage is an `event: status` saying down, and the
    recovery another saying ok, on the same open stream."""
    link = DatabaseLink(db.db_port)
    try:
        opts = api_options(dataclasses.replace(db, db_port=link.port))
        async with TestClient(TestServer(build_app(opts))) as c:
            resp = await c.get("/api/v1/stream", headers=auth(seeded.tokens["display"]))
            name, _, data = await next_event(resp)
            assert name == "ready" and data["database"] == "ok"
            link.down()
            # A deadline on the whole wait: keepalive lines would restart a per-line one.
            name, _, data = await asyncio.wait_for(next_event(resp, 30), 30)
            assert (name, data) == ("status", {"database": "down"})
            link.up()
            name, _, data = await asyncio.wait_for(next_event(resp, 30), 30)
            assert (name, data) == ("status", {"database": "ok"})
            resp.close()
    finally:
        link.close()


async def test_rules_lists_every_rule_with_its_name_and_severity(
    client: Client, seeded: Seeded
) -> None:
    """GET /rules has each rule of the rule file: id, severity, kind, metric and its name."""
    r = await client.get("/api/v1/rules", headers=auth(seeded.tokens["display"]))
    assert r.status == 200
    items = {i["id"]: i for i in (await r.json())["items"]}
    rules = load_rules(None).rules
    assert set(items) == {rule.id for rule in rules}
    for rule in rules:
        got = items[rule.id]
        assert got["severity"] == rule.severity.value and got["kind"] == rule.kind
        assert got["metric"] == rule.metric
        if rule.name is None:
            assert got["name"] is None
        else:
            assert got["name"] == {"en": rule.name.en, "zh-CN": rule.name.zh_cn}


async def test_closed_alerts_are_found_by_state_unit_device_rule_and_time(
    client: Client, seeded: Seeded
) -> None:
    """A closed alert is found by state=closed with unit, device, rule and a time range, and
    its detail has its whole history."""
    op = auth(seeded.tokens["operator"])
    closed = seeded.alerts["old_closed"]
    since = (NOW - dt.timedelta(days=4)).isoformat()
    until = (NOW - dt.timedelta(days=2)).isoformat()
    queries: list[dict[str, str]] = [
        {"state": "closed"},
        {"state": "closed", "unit": "u2"},
        {"state": "closed", "device": "u2-wl"},
        {"state": "closed", "rule": "pressure_low"},
        {"state": "closed,firing", "from": since, "to": until},
    ]
    for query in queries:
        r = await client.get("/api/v1/alerts", params=query, headers=op)
        assert r.status == 200, await r.text()
        assert [a["id"] for a in (await r.json())["items"]] == [closed], query
    for query in (
        {"state": "closed", "device": "u1-em"},
        {"state": "closed", "rule": "fire_alarm"},
    ):
        r = await client.get("/api/v1/alerts", params=query, headers=op)
        assert (await r.json())["items"] == [], query
    r = await client.get("/api/v1/alerts", params={"rule": "Not-A-Rule"}, headers=op)
    assert r.status == 400
    r = await client.get(f"/api/v1/alerts/{closed}", headers=op)
    detail = await r.json()
    assert detail["alert"]["state"] == "closed"
    assert [h["kind"] for h in detail["history"]] == ["opened"]


def _add_contacts(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO contacts (unit_id, district, name, role, phone, email) VALUES"
            " ('u1', NULL, 'Wang Fang', 'fire_safety_manager', '+8613800000001', 'wang@example.com'),"
            " (NULL, 'D1', 'Zhao Lei', 'fire_supervisor', '+8613900000002', NULL),"
            " (NULL, 'D1', 'Control room D1', 'control_room', '+8602800000000', NULL),"
            " ('u2', NULL, 'Someone Else', 'property_manager', '+8613700000003', NULL)"
        )


async def test_alert_detail_names_the_units_people_masked_for_roles_that_call_no_one(
    client: Client, seeded: Seeded
) -> None:
    """An operator gets the unit's and its district's contacts (not the control room) in the
    clear; analysts and wall screens get them masked."""
    _add_contacts(seeded.dsn)
    path = f"/api/v1/alerts/{seeded.alerts['fire']}"
    r = await client.get(path, headers=auth(seeded.tokens["operator"]))
    contacts = (await r.json())["contacts"]
    assert [(c["name"], c["phone"], c["district_wide"], c["masked"]) for c in contacts] == [
        ("Wang Fang", "+8613800000001", False, False),
        ("Zhao Lei", "+8613900000002", True, False),
    ]
    for role in ("analyst", "display"):
        r = await client.get(path, headers=auth(seeded.tokens[role]))
        contacts = (await r.json())["contacts"]
        assert [c["name"] for c in contacts] == ["Wang Fang", "Zhao Lei"]
        assert all(c["masked"] for c in contacts)
        text = str(contacts)
        assert "13800000001" not in text and "13900000002" not in text
        assert "wang@example.com" not in text
    r = await client.get("/api/v1/units/u1", headers=auth(seeded.tokens["operator"]))
    assert [c["phone"] for c in (await r.json())["contacts"]] == [
        "+8613800000001",
        "+8613900000002",
    ]


async def test_a_display_token_reads_the_board_and_nothing_else(
    client: Client, seeded: Seeded
) -> None:
    """A display token lists and opens alerts but cannot act, nor read units or telemetry."""
    disp = auth(seeded.tokens["display"])
    r = await client.get("/api/v1/alerts?state=open", headers=disp)
    assert r.status == 200 and len((await r.json())["items"]) == 3
    r = await client.post(f"/api/v1/alerts/{seeded.alerts['fire']}/ack", headers=disp, json={})
    assert r.status == 403
    for path in ("/api/v1/units", "/api/v1/units/u1/events", "/api/v1/silences"):
        r = await client.get(path, headers=disp)
        assert r.status in (200, 403), path
        if path != "/api/v1/silences":
            assert r.status == 403, path
    me = await (await client.get("/api/v1/me", headers=disp)).json()
    assert me["role"] == "display" and me["permissions"] == ["alerts:read"]


def test_display_tokens_are_made_from_the_cli_and_revocable(
    db: Endpoints,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    """`tokens create --role display` makes a token without an end (migration 0015 lets the
    role in); `tokens revoke` refuses it at once, like any other."""
    _env(monkeypatch, db)
    assert main(["tokens", "create", "--role", "display", "--name", "Wall screen 1"]) == 0
    out = capsys.readouterr().out
    token = next(line for line in out.splitlines() if line.startswith("fst_"))
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        found = store_tokens.lookup(conn, token)
    assert found is not None and found.role == "display" and found.expires_at is None
    assert main(["tokens", "revoke", str(found.id)]) == 0
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        assert store_tokens.lookup(conn, token) is None
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO api_tokens (name, role, token_sha256, hint)"
                " VALUES ('x', 'kiosk', %s, 'fst_')",
                (b"\x00" * 32,),
            )


async def test_statistics_count_confirmed_fires_and_false_alarms_apart(
    client: Client, seeded: Seeded
) -> None:
    """One fire alarm confirmed and two false alarms: 1 confirmed fire, 2 false alarms, 3
    verified, a false-alarm rate of 2/3."""
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        utd = conn.execute("SELECT num FROM devices WHERE id = 'u1-utd'").fetchone()
        assert utd is not None
        actions.close(conn, seeded.alerts["fire"], "test", verification="confirmed_fire")
        for cause in ("dust_steam", "test"):
            fire = open_alert(conn, utd[0], "u1", "fire_alarm", "critical", NOW, fire=True)
            actions.close(conn, fire, "test", verification="false_alarm", cause=cause)
    r = await client.get("/api/v1/stats/alerts?group=unit", headers=auth(seeded.tokens["analyst"]))
    row = next(x for x in (await r.json())["rows"] if x["key"] == "u1")
    assert row["confirmed_fires"] == 1 and row["false_alarms"] == 2
    assert row["fire_alarms_verified"] == 3 and row["false_alarm_rate"] == round(2 / 3, 4)


async def test_a_units_events_are_listed_newest_first_in_words(
    client: Client, seeded: Seeded
) -> None:
    """The unit's UTD events come back newest first with kind, loop, point and text; a kind
    filter narrows them, and another unit's events are not there."""
    rows = [
        (NOW - dt.timedelta(minutes=5), 1, EventKind.SUPERVISORY, 1, 3, "B1 sprinkler valve"),
        (NOW - dt.timedelta(minutes=4), 2, EventKind.SHIELD, 2, 8, "2F smoke detector"),
        (NOW - dt.timedelta(minutes=3), 3, EventKind.START, 3, 1, "smoke exhaust fan"),
        (NOW - dt.timedelta(minutes=2), 4, EventKind.FEEDBACK, 3, 1, "smoke exhaust fan"),
    ]
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        pm = PartitionManager()
        pm.load(conn)
        pm.ensure(conn, {NOW.date(), (NOW - dt.timedelta(days=1)).date()})
        utd = conn.execute("SELECT num FROM devices WHERE id = 'u1-utd'").fetchone()
        wl = conn.execute("SELECT num FROM devices WHERE id = 'u2-wl'").fetchone()
        assert utd is not None and wl is not None
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO events (ts, device_num, seq, kind, loop_no, point_no, text)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (ts, utd[0], seq, EVENT_KIND_IDS[k], lp, pt, tx)
                    for ts, seq, k, lp, pt, tx in rows
                ]
                + [(NOW, wl[0], 9, EVENT_KIND_IDS[EventKind.FAULT], None, None, "")],
            )
    op = auth(seeded.tokens["operator"])
    r = await client.get("/api/v1/units/u1/events", headers=op)
    assert r.status == 200, await r.text()
    items = (await r.json())["items"]
    assert [(i["kind"], i["loop"], i["point"], i["text"]) for i in items] == [
        ("feedback", 3, 1, "smoke exhaust fan"),
        ("start", 3, 1, "smoke exhaust fan"),
        ("shield", 2, 8, "2F smoke detector"),
        ("supervisory", 1, 3, "B1 sprinkler valve"),
    ]
    assert {i["device_id"] for i in items} == {"u1-utd"}
    r = await client.get("/api/v1/units/u1/events?kind=start,shield", headers=op)
    assert [i["kind"] for i in (await r.json())["items"]] == ["start", "shield"]
    r = await client.get("/api/v1/units/u1/events?kind=explosion", headers=op)
    assert r.status == 400
    r = await client.get("/api/v1/units/u2/events", headers=auth(seeded.tokens["operator_u1"]))
    assert r.status == 404
