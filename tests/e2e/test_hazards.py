"""The hazard closed loop (隐患闭环) against the real engine, API, outbox and a fake SMS gateway.

An inspector reports a hazard with a photo; the control room urges the unit (督促: its people get
an SMS); the unit rectifies and submits evidence; a supervisor rejects a rectification without
evidence of the fix, then reviews and closes it (销案). A hazard past its deadline is escalated
once to the district's supervisor. The data finds hazards by itself (a fault left open, false
alarms beyond the daily limit), each once while it is open. Roles and unit scopes hold.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.server import ApiServer
from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.sms import FakeSmsGateway
from store import registry as reg
from store import tokens as store_tokens
from supervision.hazard_loop import HazardOptions
from supervision.hazards import load_policy
from tests.api.conftest import api_options
from tests.helpers import Publisher, engine_settings, wait_until

pytestmark = pytest.mark.e2e
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # enough for its magic bytes; the API keeps it whole
MANAGER, SUPERVISOR = "+8613800000101", "+8613800000102"


def _policy(tmp: Path, general_days: float, fault_hours: float, per_day: int) -> Path:
    text = load_policy().model_dump(by_alias=True)
    text["deadline_days"] = {"major": 3, "general": general_days}
    text["from_data"] = [
        {**r, "open_hours": fault_hours} if r["id"] == "fault_unrepaired" else r
        for r in text["from_data"]
    ]
    text["false_alarms"]["per_day"] = per_day
    p = tmp / "hazard_policy.yaml"
    p.write_text(json.dumps(text, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return p


class Loop:
    """The engine (grading and hazard rounds every 5 s), the API, the SMS gateway, tokens."""

    def __init__(self, db: Endpoints, prefix: str, policy: Path) -> None:
        self.db = db
        self.sms = FakeSmsGateway(token="gw-token").start()
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            reg.add_unit(conn, "u1", "Lotus Hotpot", address="12 Jiefang Rd", district="D1")
            reg.add_unit(conn, "u2", "Plum Teahouse", district="D1")
            reg.add_device(conn, "utd-1", "u1", DeviceType.UTD)
            reg.add_contact(conn, "Wang Fang", "fire_safety_manager", unit_id="u1", phone=MANAGER)
            reg.add_contact(conn, "Li Wei", "fire_supervisor", district="D1", phone=SUPERVISOR)
            self.tokens = {
                name: store_tokens.create_token(conn, label, role, units)[1]
                for name, label, role, units in (
                    ("inspector", "Grid worker Zhao", "inspector", ("u1",)),
                    ("other_inspector", "Grid worker Qian", "inspector", ("u2",)),
                    ("operator", "Control room Li", "operator", ()),
                    ("supervisor", "Supervisor Sun", "supervisor", ()),
                )
            }
        settings = engine_settings(
            prefix,
            f"ingest-{uuid.uuid4().hex[:8]}",
            notify={"sms": {"gw": {"kind": "generic", "url": self.sms.url, "token": "gw-token"}}},
            supervision={"grade_every_s": 5, "hazard_policy": str(policy)},
        )
        self.engine = Engine(settings, db)
        self.engine.start()
        hazards = HazardOptions(load_policy(policy), "Asia/Shanghai", frozenset({"sms"}))
        self.api = ApiServer(api_options(db, hazards=hazards), "127.0.0.1", 0).start()
        assert self.engine.consumer.wait_connected(10), "engine did not connect to the broker"

    def call(
        self, who: str, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """(status, parsed JSON or bytes) of a request with the token of `who`."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(
            f"{self.api.url}/api/v1{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.tokens[who]}",
                "Content-Type": "image/png" if raw is not None else "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                out = r.read()
                kind = r.headers.get("Content-Type", "")
                return r.status, json.loads(out) if kind.startswith("application/json") else out
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def texts_to(self, phone: str) -> list[str]:
        """The SMS texts the gateway took for a number."""
        return [r.body["text"] for r in self.sms.requests if r.body.get("to") == phone]

    def close(self) -> None:
        """Stop everything."""
        self.api.stop()
        self.engine.stop()
        self.sms.stop()


def _loop(db: Endpoints, prefix: str, policy: Path) -> Iterator[Loop]:
    loop = Loop(db, prefix, policy)
    yield loop
    loop.close()


@pytest.fixture()
def loop(db: Endpoints, prefix: str, tmp_path: Path) -> Iterator[Loop]:
    """Deadlines of days: nothing goes overdue during the test; no fault lasts long enough."""
    yield from _loop(db, prefix, _policy(tmp_path, 15, 1000, 1000))


def test_a_reported_hazard_goes_round_the_loop_with_evidence_and_roles(loop: Loop) -> None:
    status, h = loop.call(
        "inspector",
        "POST",
        "/hazards",
        {
            "unit_id": "u1",
            "category": "blocked_exit",
            "severity": "major",
            "description": "B1 fire exit chained shut",
            "responsible": "Wang Fang",
        },
    )
    assert status == 201, h
    hid = h["id"]
    assert (h["state"], h["found_by"], h["source"]) == ("found", "Grid worker Zhao", "person")
    # A grid worker of another unit neither sees it nor can act on it.
    assert loop.call("other_inspector", "GET", f"/hazards/{hid}")[0] == 404
    assert loop.call("other_inspector", "POST", f"/hazards/{hid}/rectify", {})[0] == 404
    assert loop.call("other_inspector", "POST", "/hazards", {**h_body("u1")})[0] == 404

    # A photo: its bytes say what it is; anything else is refused.
    status, bad = loop.call("inspector", "POST", f"/hazards/{hid}/photos", raw=b"GIF89a....")
    assert status == 415, bad
    # More than 5 MB is refused before it is kept whole (a camera's raw file, or an attacker).
    status, big = loop.call(
        "inspector", "POST", f"/hazards/{hid}/photos", raw=PNG + b"\x00" * (5 * 1024 * 1024)
    )
    assert status == 413 and "at most 5 MB" in big["message"]
    status, photo = loop.call("inspector", "POST", f"/hazards/{hid}/photos", raw=PNG)
    assert status == 201 and photo["content_type"] == "image/png"
    status, got = loop.call("supervisor", "GET", f"/hazards/{hid}/photos/{photo['id']}")
    assert status == 200 and got == PNG

    # 督促: the unit's fire-safety manager is told by SMS, with the deadline.
    assert loop.call("operator", "POST", f"/hazards/{hid}/notify", {})[1]["state"] == "notified"

    def urged() -> list[str] | None:
        return loop.texts_to(MANAGER) or None

    (text,) = wait_until(urged, 20, "the unit's manager told of the hazard") or []
    assert "消防隐患督促" in text and f"#{hid}" in text and "B1 fire exit chained shut" in text
    assert loop.texts_to(SUPERVISOR) == []  # not overdue: the supervisor is not paged

    assert loop.call("inspector", "POST", f"/hazards/{hid}/rectify", {})[1]["state"] == "rectifying"
    status, err = loop.call("inspector", "POST", f"/hazards/{hid}/submit", {})
    assert status == 409 and "evidence" in err["message"]
    status, err = loop.call("inspector", "POST", f"/hazards/{hid}/submit", {"photo_ids": [999]})
    assert status == 409 and "photos of hazard" in err["message"]
    step = {"photo_ids": [photo["id"]], "comment": "chain removed"}
    assert loop.call("inspector", "POST", f"/hazards/{hid}/submit", step)[1]["state"] == "submitted"
    # Only a reviewer judges the rectification.
    status, err = loop.call("inspector", "POST", f"/hazards/{hid}/review", {})
    assert status == 403 and "hazards:review" in err["message"]
    status, err = loop.call("supervisor", "POST", f"/hazards/{hid}/reject", {})
    assert status == 409 and "say why" in err["message"]
    reject = {"comment": "the exit is blocked by boxes now"}
    assert loop.call("supervisor", "POST", f"/hazards/{hid}/reject", reject)[1]["state"] == (
        "rectifying"
    )
    status, err = loop.call("supervisor", "POST", f"/hazards/{hid}/close", {})
    assert status == 409 and "it can be: submit" in err["message"]
    again = {"comment": "boxes moved to the store room"}
    loop.call("inspector", "POST", f"/hazards/{hid}/submit", again)
    assert loop.call("supervisor", "POST", f"/hazards/{hid}/review", {})[1]["state"] == "reviewed"
    status, closed = loop.call("supervisor", "POST", f"/hazards/{hid}/close", {})
    assert status == 200 and closed["state"] == "closed" and closed["closed_at"]

    # Evidence of a closed case is kept as it was.
    status, err = loop.call("inspector", "POST", f"/hazards/{hid}/photos", raw=PNG)
    assert status == 409 and "closed" in err["message"]
    # A device of another unit is refused.
    with psycopg.connect(loop.db.dsn(), autocommit=True) as conn:
        reg.add_device(conn, "em-2", "u2", DeviceType.ELECTRICAL)
    status, err = loop.call("supervisor", "POST", "/hazards", {**h_body("u1"), "device_id": "em-2"})
    assert status == 400 and "not a device of unit u1" in err["message"]
    status, detail = loop.call("operator", "GET", f"/hazards/{hid}")
    steps = [(e["kind"], e["actor"]) for e in detail["events"]]
    assert steps == [
        ("found", "Grid worker Zhao"),
        ("photo", "Grid worker Zhao"),
        ("notified", "Control room Li"),
        ("rectifying", "Grid worker Zhao"),
        ("submitted", "Grid worker Zhao"),
        ("rejected", "Supervisor Sun"),
        ("submitted", "Grid worker Zhao"),
        ("reviewed", "Supervisor Sun"),
        ("closed", "Supervisor Sun"),
    ]
    assert detail["events"][4]["photo_ids"] == [photo["id"]]
    assert detail["events"][5]["comment"] == "the exit is blocked by boxes now"
    status, counts = loop.call("supervisor", "GET", "/hazards/counts?group=district")
    assert counts["rows"] == [
        {"key": "D1", "name": "D1", "found": 1, "open": 0, "closed": 1, "overdue": 0}
    ]


def h_body(unit: str) -> dict[str, Any]:
    """A minimal hazard report for a unit."""
    return {"unit_id": unit, "category": "other", "severity": "general", "description": "x"}


@pytest.fixture()
def hasty_loop(db: Endpoints, prefix: str, tmp_path: Path) -> Iterator[Loop]:
    """General hazards are due in 12 s (two rounds of 5 s come before, which remind); a panel
    fault open 2 s and 2 false alarms in a day are hazards."""
    yield from _loop(db, prefix, _policy(tmp_path, 12 / 86_400, 2 / 3600, 1))


def test_an_overdue_hazard_is_escalated_once_and_the_data_finds_hazards_once(
    hasty_loop: Loop, services: Endpoints, prefix: str
) -> None:
    loop = hasty_loop
    status, h = loop.call("inspector", "POST", "/hazards", h_body("u1"))
    assert status == 201

    def escalated() -> list[str] | None:
        return loop.texts_to(SUPERVISOR) or None

    (text,) = wait_until(escalated, 30, "the supervisor told of the overdue hazard") or []
    assert "隐患逾期" in text and f"#{h['id']}" in text
    # Before that, the unit's manager was reminded of the deadline (once).
    reminders = [t for t in loop.texts_to(MANAGER) if "隐患整改提醒" in t and f"#{h['id']}" in t]
    assert len(reminders) == 1, loop.texts_to(MANAGER)

    # The data: the panel reports a fault nobody repairs, and two fire alarms are closed as
    # false alarms.
    pub = Publisher(services, client_id=f"utd-{uuid.uuid4().hex[:8]}")
    try:
        now = int(time.time() * 1000)
        pub.publish(f"{prefix}/utd-1/event", {"ts": now, "seq": 1, "kind": "fault"})
        for seq, point in ((2, 3), (3, 4)):
            body = {"ts": now, "seq": seq, "kind": "fire_alarm", "loop": 1, "point": point}
            pub.publish(f"{prefix}/utd-1/event", body)
    finally:
        pub.close()

    def fire_alarms() -> list[int] | None:
        with psycopg.connect(loop.db.dsn(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id FROM alerts WHERE rule_id = 'fire_alarm' ORDER BY id"
            ).fetchall()
        return [r[0] for r in rows] if len(rows) == 2 else None

    for alert_id in wait_until(fire_alarms, 20, "two fire alarms") or []:
        close = {"verification": "false_alarm", "cause": "dust_steam"}
        assert loop.call("operator", "POST", f"/alerts/{alert_id}/close", close)[0] == 200

    def found() -> dict[str, tuple[Any, ...]] | None:
        with psycopg.connect(loop.db.dsn(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT rule_id, unit_id, device_id, category, found_by FROM hazards"
                " WHERE source = 'data'"
            ).fetchall()
        return {r[0]: r[1:] for r in rows} if len(rows) == 2 else None

    data = wait_until(found, 30, "hazards found in the data") or {}
    assert data == {
        "fault_unrepaired": ("u1", "utd-1", "alarm_system", "engine"),
        "false_alarms_day": ("u1", None, "alarm_system", "engine"),
    }

    # Another round later: nothing found twice, nothing escalated twice.
    with psycopg.connect(loop.db.dsn(), autocommit=True) as conn:
        since = conn.execute("SELECT max(computed_at) FROM unit_grades").fetchone()

    def another_round() -> bool | None:
        with psycopg.connect(loop.db.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT max(computed_at) FROM unit_grades").fetchone()
        return True if row and since and row[0] > since[0] else None

    assert wait_until(another_round, 20, "another supervision round")
    with psycopg.connect(loop.db.dsn(), autocommit=True) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM hazards WHERE source = 'data'),"
            " (SELECT count(*) FROM hazard_events WHERE kind = 'overdue' AND hazard_id = %s)",
            (h["id"],),
        ).fetchone()
    assert counts == (2, 1)
    with psycopg.connect(loop.db.dsn(), autocommit=True) as conn:
        kinds = conn.execute(
            "SELECT kind FROM hazard_events WHERE hazard_id = %s ORDER BY id", (h["id"],)
        ).fetchall()
    assert [k[0] for k in kinds] == ["found", "reminded", "overdue"]
    reminders = [t for t in loop.texts_to(MANAGER) if "隐患整改提醒" in t and f"#{h['id']}" in t]
    assert len(reminders) == 1
    assert len(loop.texts_to(SUPERVISOR)) >= 1
    overdue_texts = [t for t in loop.texts_to(SUPERVISOR) if f"#{h['id']}" in t]
    assert len(overdue_texts) == 1
    status, listed = loop.call("operator", "GET", "/hazards?overdue=true")
    assert h["id"] in [x["id"] for x in listed["items"]]

    # The unit's risk grade counts its overdue hazards, and says so.
    def graded() -> list[dict[str, Any]] | None:
        with psycopg.connect(loop.db.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT reasons FROM unit_grades WHERE unit_id = 'u1'").fetchone()
        reasons = [r for r in (row[0] if row else []) if r["factor"] == "overdue_hazards"]
        return reasons or None

    (reason,) = wait_until(graded, 20, "overdue hazards in the grade") or []
    assert "逾期未整改" in reason["zh-CN"] and reason["points"] >= 12
