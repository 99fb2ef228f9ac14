"""Given-up notifications over the API: listed (masked for roles that call no one, scoped to a
token's units) and sent again by an operator, who is recorded."""

from __future__ import annotations

from typing import Any

import psycopg
from aiohttp.test_utils import TestClient

from store import alert_plan
from tests.api.conftest import Seeded, auth

Client = TestClient[Any, Any]
PHONE_U1 = "+8613800000011"
PHONE_U2 = "+8613800000022"


def _given_up(seeded: Seeded) -> dict[str, int]:
    """One given-up SMS for a u1 alert and one for a u2 alert; their ids."""
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM notifications")
        for alert, phone in (("fire", PHONE_U1), ("wl_warning", PHONE_U2)):
            body = {"alert": {"id": seeded.alerts[alert], "severity": "critical"}}
            alert_plan.enqueue(conn, seeded.alerts[alert], "sms", phone, body)
        conn.execute(
            "UPDATE notifications SET state = 'given_up', attempts = 8,"
            " last_error = 'HTTP 503 for ' || receiver"
        )
        rows = conn.execute("SELECT receiver, id FROM notifications").fetchall()
    return {r[0]: int(r[1]) for r in rows}


async def test_given_up_notifications_are_listed_masked_and_scoped(
    client: Client, seeded: Seeded
) -> None:
    """An operator sees numbers in the clear, an analyst masked (in the error too), a u1
    operator only u1's."""
    _given_up(seeded)
    url = "/api/v1/notifications?state=given_up"
    full = await (await client.get(url, headers=auth(seeded.tokens["operator"]))).json()
    assert sorted(n["receiver"] for n in full["items"]) == [PHONE_U1, PHONE_U2]
    masked = await (await client.get(url, headers=auth(seeded.tokens["analyst"]))).json()
    assert PHONE_U1 not in str(masked) and PHONE_U2 not in str(masked)
    assert all("****" in n["receiver"] for n in masked["items"])
    scoped = await (await client.get(url, headers=auth(seeded.tokens["operator_u1"]))).json()
    assert [n["receiver"] for n in scoped["items"]] == [PHONE_U1]


async def test_an_operator_sends_them_again_and_is_recorded(client: Client, seeded: Seeded) -> None:
    """retry by id queues it due now with its attempts reset, records who on the row and in
    the alert's history; an analyst may not; a u1 operator cannot touch u2's."""
    ids = _given_up(seeded)
    r = await client.post(
        "/api/v1/notifications/retry",
        json={"ids": [ids[PHONE_U2]]},
        headers=auth(seeded.tokens["operator_u1"]),
    )
    assert r.status == 200 and (await r.json()) == {"queued": [], "not_queued": [ids[PHONE_U2]]}
    r = await client.post(
        "/api/v1/notifications/retry",
        json={"given_up": True},
        headers=auth(seeded.tokens["analyst"]),
    )
    assert r.status == 403
    r = await client.post(
        "/api/v1/notifications/retry",
        json={"given_up": True},
        headers=auth(seeded.tokens["operator"]),
    )
    assert (await r.json())["queued"] == sorted(ids.values())
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT state, attempts, retried_by, next_attempt_at <= now() FROM notifications"
        ).fetchall()
        history = conn.execute(
            "SELECT actor FROM alert_events WHERE kind = 'notification_retried' AND alert_id = %s",
            (seeded.alerts["fire"],),
        ).fetchall()
    assert rows == [("pending", 0, "Test operator", True)] * 2
    assert history == [("Test operator",)]
    r = await client.post(
        "/api/v1/notifications/retry", json={}, headers=auth(seeded.tokens["operator"])
    )
    assert r.status == 400
