"""What the console's "Retry" on a given-up notification asks of the API: the alert detail
names each notification (id, tries, who resent it and when), a resend shows there, and tokens
that only read may not resend."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient

from store import alert_plan
from tests.api.conftest import Seeded, auth

Client = TestClient[Any, Any]
PHONE = "+8613800000011"
RETRY = "/api/v1/notifications/retry"


def _notifications(seeded: Seeded, states: tuple[str, ...]) -> dict[str, int]:
    """One SMS of the fire alert in each of these states (8 tries, an error naming the
    receiver); their ids by state."""
    alert_id = seeded.alerts["fire"]
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM notifications")
        ids = {}
        for state in states:
            alert_plan.enqueue(conn, alert_id, "sms", PHONE, {"alert": {"id": alert_id}})
            row = conn.execute("SELECT max(id) FROM notifications").fetchone()
            assert row is not None
            nid = int(row[0])
            conn.execute(
                "UPDATE notifications SET state = %s, attempts = 8,"
                " last_error = 'HTTP 503 for ' || receiver WHERE id = %s",
                (state, nid),
            )
            ids[state] = nid
    return ids


async def _detail_rows(client: Client, seeded: Seeded, role: str) -> dict[int, dict[str, Any]]:
    r = await client.get(
        f"/api/v1/alerts/{seeded.alerts['fire']}", headers=auth(seeded.tokens[role])
    )
    assert r.status == 200
    return {n["id"]: n for n in (await r.json())["notifications"]}


async def test_the_detail_names_each_notification_with_its_tries_and_no_resend_yet(
    client: Client, seeded: Seeded
) -> None:
    """Each notification row of an alert's detail has its id, tries and empty retried_by and
    retried_at; the receiver stays masked for roles that call no one."""
    ids = _notifications(seeded, ("given_up",))
    rows = await _detail_rows(client, seeded, "operator")
    assert list(rows) == [ids["given_up"]]
    row = rows[ids["given_up"]]
    assert (row["state"], row["attempts"], row["receiver"]) == ("given_up", 8, PHONE)
    assert row["retried_by"] is None and row["retried_at"] is None
    for role in ("analyst", "display"):
        masked = (await _detail_rows(client, seeded, role))[ids["given_up"]]
        assert PHONE not in str(masked) and "****" in masked["receiver"]


async def test_a_resent_notification_shows_who_resent_it_and_when_in_the_detail(
    client: Client, seeded: Seeded
) -> None:
    """An operator's retry by id queues a given-up and a cancelled notification (not a sent
    one); the detail then shows them pending with no tries, retried_by the token's name and
    retried_at now, and the history a notification_retried line per row."""
    ids = _notifications(seeded, ("given_up", "cancelled", "sent"))
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    r = await client.post(
        RETRY, json={"ids": sorted(ids.values())}, headers=auth(seeded.tokens["operator"])
    )
    assert r.status == 200
    assert await r.json() == {
        "queued": sorted([ids["given_up"], ids["cancelled"]]),
        "not_queued": [ids["sent"]],
    }
    r = await client.get(
        f"/api/v1/alerts/{seeded.alerts['fire']}", headers=auth(seeded.tokens["analyst"])
    )
    detail = await r.json()
    rows = {n["id"]: n for n in detail["notifications"]}
    for state in ("given_up", "cancelled"):
        row = rows[ids[state]]
        assert (row["state"], row["attempts"], row["retried_by"]) == ("pending", 0, "Test operator")
        at = dt.datetime.fromisoformat(row["retried_at"])
        assert before <= at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
        # The error kept from before the resend names the receiver: masked for an analyst.
        assert row["last_error"].startswith("retried by Test operator; before: HTTP 503 for ")
        assert PHONE not in row["last_error"]
    sent = rows[ids["sent"]]
    assert (sent["state"], sent["retried_by"], sent["retried_at"]) == ("sent", None, None)
    retried = [
        (e["actor"], e["comment"]) for e in detail["history"] if e["kind"] == "notification_retried"
    ]
    assert sorted(retried) == sorted(
        ("Test operator", f"sms notification {ids[s]}") for s in ("given_up", "cancelled")
    )


async def test_read_only_tokens_may_not_resend(client: Client, seeded: Seeded) -> None:
    """A display or analyst token gets 403 on retry, by id or all given up, and the
    notification stays given up with no one recorded."""
    ids = _notifications(seeded, ("given_up",))
    for role in ("display", "analyst"):
        for body in ({"ids": [ids["given_up"]]}, {"given_up": True}):
            r = await client.post(RETRY, json=body, headers=auth(seeded.tokens[role]))
            assert r.status == 403, (role, body)
            assert (await r.json())["error"] == "forbidden"
    row = (await _detail_rows(client, seeded, "operator"))[ids["given_up"]]
    assert (row["state"], row["attempts"], row["retried_by"]) == ("given_up", 8, None)
