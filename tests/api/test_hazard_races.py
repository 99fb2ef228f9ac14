"""Two people stepping the same hazard at the same moment: one step wins, the other is told.

Two supervisors judge one submitted rectification at once, one passing it and one sending it
back; two operators urge one hazard at once. Each time exactly one request moves the hazard,
the other answers 409, the history holds one step and the unit's people are told once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient

from store import registry as reg
from store import tokens as store_tokens
from tests.api.conftest import Seeded, auth

Client = TestClient[Any, Any]
ROUNDS = 6  # each round a fresh hazard: the race is run several times, not hoped for once


def _tokens(seeded: Seeded) -> dict[str, str]:
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        return {
            name: store_tokens.create_token(conn, label, role)[1]
            for name, label, role in (
                ("sun", "Supervisor Sun", "supervisor"),
                ("zhou", "Supervisor Zhou", "supervisor"),
                ("li", "Control room Li", "operator"),
                ("chen", "Control room Chen", "operator"),
            )
        }


async def _hazard(client: Client, token: str) -> int:
    r = await client.post(
        "/api/v1/hazards",
        json={
            "unit_id": "u1",
            "category": "storage",
            "severity": "general",
            "description": "纸箱堆放",
        },
        headers=auth(token),
    )
    assert r.status == 201, await r.text()
    return int((await r.json())["id"])


async def _step(client: Client, token: str, hazard_id: int, action: str) -> int:
    r = await client.post(
        f"/api/v1/hazards/{hazard_id}/{action}", json={"comment": action}, headers=auth(token)
    )
    return r.status


def _kinds(dsn: str, hazard_id: int) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT kind FROM hazard_events WHERE hazard_id = %s ORDER BY id", (hazard_id,)
        ).fetchall()
    return [str(r[0]) for r in rows]


async def test_two_reviewers_at_once_one_judgement_stands(client: Client, seeded: Seeded) -> None:
    """Sun reviews and Zhou rejects the same submitted hazard at once: one 200, one 409, and
    the history and state agree with the one that won."""
    t = _tokens(seeded)
    for _ in range(ROUNDS):
        hid = await _hazard(client, t["sun"])
        for action in ("notify", "rectify", "submit"):
            assert await _step(client, t["sun"], hid, action) == 200
        review, reject = await asyncio.gather(
            _step(client, t["sun"], hid, "review"), _step(client, t["zhou"], hid, "reject")
        )
        assert sorted((review, reject)) == [200, 409]
        kinds = _kinds(seeded.dsn, hid)
        judged = [k for k in kinds if k in ("reviewed", "rejected")]
        assert len(judged) == 1, kinds
        r = await client.get(f"/api/v1/hazards/{hid}", headers=auth(t["sun"]))
        state = (await r.json())["hazard"]["state"]
        assert state == ("reviewed" if review == 200 else "rectifying"), (state, kinds)


async def test_two_operators_urging_at_once_tell_the_unit_once(
    client: Client, seeded: Seeded
) -> None:
    """Li and Chen both press 督促 on the same new hazard: one is recorded and the unit's
    people get one message each, not two."""
    t = _tokens(seeded)
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        reg.add_contact(
            conn, "Wang Fang", "fire_safety_manager", unit_id="u1", phone="+8613800000101"
        )
        reg.add_contact(
            conn, "Zhou Qiang", "property_manager", unit_id="u1", phone="+8613800000102"
        )
    for _ in range(ROUNDS):
        hid = await _hazard(client, t["li"])
        a, b = await asyncio.gather(
            _step(client, t["li"], hid, "notify"), _step(client, t["chen"], hid, "notify")
        )
        assert sorted((a, b)) == [200, 409]
        assert _kinds(seeded.dsn, hid).count("notified") == 1
        with psycopg.connect(seeded.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT contact_id, channel, count(*) FROM notifications WHERE kind = 'hazard'"
                " AND (payload->>'hazard_id')::bigint = %s GROUP BY 1, 2",
                (hid,),
            ).fetchall()
        assert len(rows) == 2 and all(n == 1 for *_, n in rows), rows
