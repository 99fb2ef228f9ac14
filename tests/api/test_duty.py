"""The duty log (值班日志) through the API: a shift, its notes, the handover with what was open,
the next shift seeing it, and the day's report listing both."""

from __future__ import annotations

import io
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient
from openpyxl import load_workbook

from store import tokens as store_tokens
from tests.api.conftest import Seeded, auth

Client = TestClient[Any, Any]


async def _post(client: Client, token: str, path: str, body: Any = None) -> tuple[int, Any]:
    r = await client.post(
        f"/api/v1{path}", json=body if body is not None else {}, headers=auth(token)
    )
    return r.status, await r.json()


async def test_a_shift_is_handed_over_with_what_was_open(client: Client, seeded: Seeded) -> None:
    night = seeded.tokens["operator"]
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        _, day = store_tokens.create_token(conn, "Test day shift", "operator")
        open_alerts = conn.execute("SELECT count(*) FROM alerts WHERE state <> 'closed'").fetchone()
    assert open_alerts is not None and open_alerts[0] > 0

    status, _ = await _post(client, night, "/duty/note", {"text": "too early"})
    assert status == 409  # nobody is on duty yet: the note has no shift to go in
    status, started = await _post(client, night, "/duty/start")
    assert status == 201 and started["shift"]["operator"] == "Test operator"
    status, again = await _post(client, night, "/duty/start")
    assert status == 409 and "is on duty since" in again["message"]
    status, noted = await _post(
        client, night, "/duty/note", {"text": "u1 panel in test mode 02:00-03:00"}
    )
    assert status == 201 and [n["text"] for n in noted["shift"]["notes"]] == [
        "u1 panel in test mode 02:00-03:00"
    ]
    status, _ = await _post(client, night, "/duty/end", {"handover_note": ""})
    assert status == 400  # a handover says something
    handover = {"handover_note": "u1 fire alarm still to verify", "handed_to": "Test day shift"}
    status, ended = await _post(client, night, "/duty/end", handover)
    assert status == 200
    shift = ended["shift"]
    assert shift["ended_at"] and shift["handover_note"] == "u1 fire alarm still to verify"
    taken = shift["open_at_handover"]
    assert taken["alerts_total"] == open_alerts[0] == len(taken["alerts"])
    assert {"id", "rule_id", "severity", "state", "unit_name"} == set(taken["alerts"][0])
    assert (taken["hazards_open"], taken["hazards_overdue"]) == (0, 0)
    assert (await _post(client, night, "/duty/end", handover))[0] == 409

    status, _ = await _post(client, day, "/duty/start")
    assert status == 201
    log = await (await client.get("/api/v1/duty", headers=auth(day))).json()
    assert log["mine"]["operator"] == "Test day shift" and log["mine"]["ended_at"] is None
    assert log["last_handover"]["handover_note"] == "u1 fire alarm still to verify"
    assert [s["operator"] for s in log["shifts"]] == ["Test day shift", "Test operator"]
    denied = await client.get("/api/v1/duty", headers=auth(seeded.tokens["analyst"]))
    assert denied.status == 403

    # Today's report lists both shifts, the handover and the notes.
    r = await client.get("/api/v1/reports/daily.xlsx", headers=auth(seeded.tokens["admin"]))
    rows = list(load_workbook(io.BytesIO(await r.read()))["值班 Duty"].iter_rows(values_only=True))
    assert rows[0][:3] == ("值班员 Operator", "开始 Start", "结束 End")
    first, second = rows[1], rows[2]
    assert (first[0], first[3], first[4], first[5]) == (
        "Test operator",
        "Test day shift",
        "u1 fire alarm still to verify",
        open_alerts[0],
    )
    assert str(first[7]).endswith("Test operator: u1 panel in test mode 02:00-03:00")
    assert (second[0], second[2]) == ("Test day shift", "值班中 on duty")
