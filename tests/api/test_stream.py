"""GET /stream: live alert changes as SSE, in commit order, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import psycopg
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from store import tokens as store_tokens
from tests.api.conftest import NOW, Seeded, auth, open_alert

Client = TestClient[Any, Any]


async def next_event(resp: ClientResponse, within_s: float = 10.0) -> tuple[str, int, Any]:
    """The next SSE event (name, id, data), skipping comments and retry lines."""
    ev: dict[str, str] = {}
    while True:
        raw = await asyncio.wait_for(resp.content.readline(), within_s)
        assert raw, "the stream ended"
        line = raw.decode().rstrip("\n")
        if line == "":
            if "event" in ev:
                return ev["event"], int(ev["id"]), json.loads(ev.get("data", "null"))
            ev = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        ev[field] = value


async def test_live_changes_arrive_and_a_resume_misses_nothing(
    client: Client, seeded: Seeded
) -> None:
    """Changes made while disconnected are replayed after Last-Event-ID, once each, in order."""
    op = auth(seeded.tokens["operator"])
    resp = await client.get("/api/v1/stream", headers=op)
    assert resp.headers["Content-Type"] == "text/event-stream"
    name, ready_id, _ = await next_event(resp)
    assert name == "ready"
    await client.post(f"/api/v1/alerts/{seeded.alerts['em_major']}/ack", headers=op)
    name, first_id, data = await next_event(resp)
    assert name == "alert" and first_id > ready_id
    assert data["kind"] == "acknowledged" and data["actor"] == "Test operator"
    assert data["alert"]["state"] == "acknowledged"
    resp.close()

    await client.post(f"/api/v1/alerts/{seeded.alerts['em_major']}/resolve", headers=op)
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        num = conn.execute("SELECT num FROM devices WHERE id = 'u1-em'").fetchone()
        assert num is not None
        new_id = open_alert(conn, num[0], "u1", "cable_temp_high_1", "major", NOW, value=80.0)

    resp = await client.get("/api/v1/stream", headers={**op, "Last-Event-ID": str(first_id)})
    replay = [await next_event(resp), await next_event(resp)]
    assert [(e[2]["kind"], e[2]["alert"]["id"]) for e in replay] == [
        ("resolved", seeded.alerts["em_major"]),
        ("opened", new_id),
    ]
    assert replay[0][1] > first_id and replay[1][1] > replay[0][1]
    name, resumed_at, _ = await next_event(resp)
    assert name == "ready" and resumed_at == replay[1][1]
    await client.post(f"/api/v1/alerts/{new_id}/ack", headers=op)
    name, live_id, data = await next_event(resp)
    assert name == "alert" and live_id > resumed_at and data["kind"] == "acknowledged"
    resp.close()


async def test_a_unit_scoped_stream_hides_other_units(client: Client, seeded: Seeded) -> None:
    """A token limited to u1 is not told of changes at u2."""
    scoped = await client.get("/api/v1/stream", headers=auth(seeded.tokens["operator_u1"]))
    assert (await next_event(scoped))[0] == "ready"
    op = auth(seeded.tokens["operator"])
    await client.post(f"/api/v1/alerts/{seeded.alerts['wl_warning']}/ack", headers=op)
    await client.post(f"/api/v1/alerts/{seeded.alerts['fire']}/ack", headers=op)
    name, _, data = await next_event(scoped)
    assert name == "alert" and data["alert"]["unit_id"] == "u1"
    scoped.close()


async def test_bad_last_event_id_is_400(client: Client, seeded: Seeded) -> None:
    """A Last-Event-ID that is not an id of this stream is refused."""
    r = await client.get(
        "/api/v1/stream", headers={**auth(seeded.tokens["analyst"]), "Last-Event-ID": "abc"}
    )
    assert r.status == 400


def test_feed_numbers_events_in_commit_order(seeded: Seeded) -> None:
    """An event committed later gets a later stream id even if its row id is smaller."""
    with (
        psycopg.connect(seeded.dsn) as first,
        psycopg.connect(seeded.dsn) as second,
    ):
        insert = "INSERT INTO alert_events (alert_id, kind) VALUES (%s, 'test') RETURNING id"
        early = first.execute(insert, (seeded.alerts["fire"],)).fetchone()
        late = second.execute(insert, (seeded.alerts["fire"],)).fetchone()
        assert early is not None and late is not None and early[0] < late[0]
        second.commit()
        first.commit()
        rows: dict[int, int] = dict(
            first.execute(
                "SELECT id, stream_seq FROM alert_events WHERE id = ANY(%s)", ([early[0], late[0]],)
            ).fetchall()
        )
    assert rows[late[0]] < rows[early[0]]


async def _until_end(resp: ClientResponse, within_s: float) -> tuple[str, Any]:
    """The next event after `ready`: (name, data)."""
    name, _, data = await next_event(resp, within_s)
    return name, data


async def test_revoking_a_token_ends_its_open_stream(client: Client, seeded: Seeded) -> None:
    """A revoked token's stream gets no further change, but a final `end` event, then closes."""
    token = seeded.tokens["analyst"]
    resp = await client.get("/api/v1/stream", headers=auth(token))
    assert (await next_event(resp))[0] == "ready"
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        row = store_tokens.lookup(conn, token)
        assert row is not None and store_tokens.revoke(conn, row.id)
    revoked_at = time.monotonic()
    op = auth(seeded.tokens["operator"])
    assert (await client.post(f"/api/v1/alerts/{seeded.alerts['fire']}/ack", headers=op)).ok
    name, data = await _until_end(resp, 6.0)
    assert (name, data["reason"]) == ("end", "token_revoked"), data
    assert "revoked" in data["message"]
    assert await asyncio.wait_for(resp.content.read(), 5.0) == b""
    assert time.monotonic() - revoked_at < 5.0
    again = await client.get("/api/v1/stream", headers=auth(token))
    assert again.status == 401


async def test_an_expiring_token_ends_its_stream_when_it_expires(
    client: Client, seeded: Seeded
) -> None:
    """A token with expires_at is refused after it, and its open stream ends within seconds."""
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        _, token = store_tokens.create_token(conn, "short", "operator", expires_at=expires)
    resp = await client.get("/api/v1/stream", headers=auth(token))
    assert resp.status == 200 and (await next_event(resp))[0] == "ready"
    name, data = await _until_end(resp, 8.0)
    assert (name, data["reason"]) == ("end", "token_expired"), data
    assert dt.datetime.now(dt.UTC) >= expires
    r = await client.get("/api/v1/me", headers=auth(token))
    assert r.status == 401 and "expired" in (await r.json())["message"]
