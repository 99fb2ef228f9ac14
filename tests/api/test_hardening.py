"""Hardening of every answer: NUL bytes, CSV formulas, phone numbers, /readyz details, headers."""

from __future__ import annotations

import csv
import io
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from devices.catalog import DeviceType
from firesentry.embedded import Endpoints, free_port
from store import alert_plan
from store import registry as reg
from tests.api.conftest import NOW, Seeded, add_readings, api_options, auth
from tests.api.test_ops import report

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/alerts?district=x%00", "district"),
        ("/api/v1/units?district=%00", "district"),
        ("/api/v1/units/u1%00", "id"),
    ],
)
async def test_nul_bytes_in_parameters_are_400_naming_the_field(
    client: Client, seeded: Seeded, path: str, field: str
) -> None:
    """A NUL byte in a query or path parameter is a 400 naming it, never a database 500."""
    r = await client.get(path, headers=auth(seeded.tokens["admin"]))
    body = await r.json()
    assert r.status == 400, body
    assert body["error"] == "bad_request"
    assert body["details"][0]["field"] == field
    assert "NUL" in body["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("ack", {"comment": "smoke\u0000"}, "comment"),
        ("close", {"verification": "false_alarm", "cause": "test", "comment": "a\x00"}, "comment"),
    ],
)
async def test_nul_bytes_in_json_bodies_are_400_naming_the_field(
    client: Client, seeded: Seeded, path: str, body: dict[str, str], field: str
) -> None:
    """A NUL byte in a JSON body's text is a 400 naming the field; nothing is changed."""
    r = await client.post(
        f"/api/v1/alerts/{seeded.alerts['fire']}/{path}",
        headers=auth(seeded.tokens["operator"]),
        json=body,
    )
    out = await r.json()
    assert r.status == 400, out
    assert out["details"][0]["field"] == field and out["message"].startswith("invalid body")
    with psycopg.connect(seeded.dsn) as conn:
        row = conn.execute("SELECT state FROM alerts WHERE id = %s", (seeded.alerts["fire"],))
        assert row.fetchone() == ("firing",)


async def test_csv_cells_that_a_spreadsheet_would_run_are_escaped(
    client: Client, seeded: Seeded
) -> None:
    """A device id starting with '-' (a formula to Excel) is exported as '-…; numbers stay numbers."""
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        num = reg.add_device(conn, "-A1", "u1", DeviceType.ELECTRICAL)
        add_readings(conn, num, "temp_c_1", [(NOW, -5.5)])
    r = await client.get(
        "/api/v1/telemetry.csv?device=-A1&metric=temp_c_1", headers=auth(seeded.tokens["analyst"])
    )
    assert r.status == 200
    rows = list(csv.reader(io.StringIO(await r.text())))
    assert rows[1][1:] == ["'-A1", "temp_c_1", "-5.5", "°C"]


async def _notification(client: Client, seeded: Seeded, role: str) -> dict[str, Any]:
    r = await client.get(
        f"/api/v1/alerts/{seeded.alerts['fire']}", headers=auth(seeded.tokens[role])
    )
    assert r.status == 200
    return {n["channel"]: n for n in (await r.json())["notifications"]}


async def test_phone_numbers_only_for_roles_that_dial_them(client: Client, seeded: Seeded) -> None:
    """Operators and admins see a contact's number and address; analysts see them masked."""
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        cid = reg.add_contact(
            conn, "Wang", "fire_safety_manager", unit_id="u1", phone="+8613812340001"
        )
        for channel, receiver in (("sms", "+8613812340001"), ("email", "wang.li@example.com")):
            alert_plan.enqueue(
                conn, seeded.alerts["fire"], channel, receiver, {"n": 1}, contact_id=cid
            )
        conn.execute(
            "UPDATE notifications SET last_error = '''+8613812340001'' is not reachable'"
            " WHERE channel = 'sms'"
        )
    for role in ("operator", "admin"):
        seen = await _notification(client, seeded, role)
        assert seen["sms"]["receiver"] == "+8613812340001", role
        assert seen["email"]["receiver"] == "wang.li@example.com", role
    masked = await _notification(client, seeded, "analyst")
    assert masked["sms"]["receiver"] == "+86138****0001"
    assert masked["sms"]["last_error"] == "'+86138****0001' is not reachable"
    assert masked["sms"]["contact_name"] == "Wang"
    assert masked["email"]["receiver"] == "w***@example.com"


async def test_readyz_without_a_token_says_only_ok_or_fail(db: Endpoints, seeded: Seeded) -> None:
    """Anonymous /readyz gives status and ok/fail per part; any valid token gets the reasons."""
    report(seeded.dsn)
    opts = api_options(db, mqtt_port=free_port())
    async with TestClient(TestServer(build_app(opts))) as client:
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503
        assert body == {
            "status": "not_ready",
            "checks": {"database": "ok", "broker": "fail", "engine": "ok", "outbox": "ok"},
            "engines": [],
            "outbox": None,
            "channel_alerts": [],
        }
        bad = await client.get("/readyz", headers=auth("fst_not-a-token"))
        assert (await bad.json())["checks"]["broker"] == "fail"
        r = await client.get("/readyz", headers=auth(seeded.tokens["analyst"]))
        full = await r.json()
        assert r.status == 503 and str(opts.mqtt_port) in full["checks"]["broker"]
        assert [e["client_id"] for e in full["engines"]] == ["ingest-a"]
        assert full["outbox"] == {"due": 0, "oldest_due_s": 0.0}


async def test_readyz_details_for_a_known_token_while_the_database_is_down(
    db: Endpoints, seeded: Seeded
) -> None:
    """A token the database confirmed a moment ago still gets the reasons when it is unreachable."""
    token = seeded.tokens["operator"]
    opts = api_options(db)
    async with TestClient(TestServer(build_app(opts))) as client:
        assert (await client.get("/api/v1/me", headers=auth(token))).status == 200
        with psycopg.connect(db.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{db.db_name}" WITH ALLOW_CONNECTIONS false')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (db.db_name,),
            )
        try:
            anonymous = await (await client.get("/readyz")).json()
            assert anonymous["checks"]["database"] == "fail"
            stranger = await (await client.get("/readyz", headers=auth("fst_guess"))).json()
            assert stranger["checks"]["database"] == "fail"
            known = await (await client.get("/readyz", headers=auth(token))).json()
            assert known["checks"]["database"] not in ("ok", "fail")
            assert known["checks"]["engine"] == "unknown: the database did not answer"
        finally:
            with psycopg.connect(db.dsn("postgres"), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{db.db_name}" WITH ALLOW_CONNECTIONS true')


HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


async def test_every_answer_says_nosniff_and_no_referrer(client: Client, seeded: Seeded) -> None:
    """JSON, errors, CSV, the SSE stream, the console, static files and 404s all carry both."""
    analyst = auth(seeded.tokens["analyst"])
    plain = [
        ("/api/v1/alerts", analyst),
        ("/api/v1/alerts", {}),
        ("/api/v1/nope", analyst),
        ("/api/v1/telemetry.csv?device=u1-em", analyst),
        ("/api/v1/openapi.json", {}),
        ("/", {}),
        ("/static/app.js", {}),
        ("/static/nope.js", {}),
        ("/healthz", {}),
        ("/readyz", {}),
    ]
    for path, headers in plain:
        async with client.get(path, headers=headers) as r:
            await r.read()
            for name, value in HEADERS.items():
                assert r.headers.get(name) == value, (path, r.status, name)
    async with client.get("/api/v1/stream", headers=analyst) as r:
        assert r.status == 200
        for name, value in HEADERS.items():
            assert r.headers.get(name) == value, ("stream", name)
