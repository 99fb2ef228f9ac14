"""Silences on real services: the control room still hears silenced fire alarms, the unit does not."""

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
from simulators.services.webhook import Received, WebhookReceiver
from store import registry as reg
from store import tokens as store_tokens
from tests.api.conftest import api_options
from tests.e2e.conftest import SECRET
from tests.e2e.test_console import token
from tests.helpers import Publisher, engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e

ROUTING = """
version: 1
group_wait_s: 0.3
routes:
  - name: critical
    match: {severity: [critical]}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager, control_room], channels: [sms]}
    repeat: {every_min: 60, max: 2}
  - name: default
    match: {}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager], channels: [sms]}
"""
MANAGER, CONTROL_ROOM = "+8613800000001", "+8613800000009"


@pytest.fixture()
def world(db: Endpoints) -> Endpoints:
    """Unit u1 (district D1): two fire panels and a monitor, its manager and the control room."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Riverside Mall", district="D1")
        reg.add_device(conn, "utd-1", "u1", DeviceType.UTD)
        reg.add_device(conn, "utd-2", "u1", DeviceType.UTD)
        reg.add_device(conn, "em-1", "u1", DeviceType.ELECTRICAL)
        reg.add_contact(conn, "Wang Fang", "fire_safety_manager", unit_id="u1", phone=MANAGER)
        reg.add_contact(
            conn, "D1 control room", "control_room", district="D1", phone=CONTROL_ROOM, locale="en"
        )
    return db


@pytest.fixture()
def engine(
    world: Endpoints, prefix: str, tmp_path: Path, sms: FakeSmsGateway, receiver: WebhookReceiver
) -> Iterator[Engine]:
    """The engine with the control room's webhook and the SMS gateway; escalations every 0.2 s."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    settings = engine_settings(
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        rules={"silence_check_s": 0.2},
        notify={
            "routing_file": str(routing),
            "webhooks": {"control_room": {"url": receiver.url, "secret": SECRET}},
            "sms": {"gw": {"kind": "generic", "url": sms.url, "token": "gw-token"}},
        },
    )
    e = Engine(settings, world)
    e.start()
    assert e.consumer.wait_connected(10)
    yield e
    e.stop()


@pytest.fixture()
def api(world: Endpoints, engine: Engine) -> Iterator[ApiServer]:
    """The API beside the engine."""
    server = ApiServer(api_options(world), "127.0.0.1", 0).start()
    yield server
    server.stop()


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    """A device-side publisher."""
    p = Publisher(services, client_id=f"silence-pub-{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def call(api: ApiServer, bearer: str, method: str, path: str, body: Any = None) -> Any:
    """One API call; the decoded JSON answer (a non-2xx answer fails the test with its body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{api.url}/api/v1{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {path}: {exc.code} {exc.read().decode()}") from None


def fire(pub: Publisher, prefix: str, device: str) -> None:
    """A fire alarm from a panel."""
    pub.publish(
        f"{prefix}/{device}/event",
        {"ts": int(time.time() * 1000), "seq": 1, "kind": "fire_alarm", "loop": 1, "point": 3},
    )


def alert_of(dsn: str, device: str) -> int:
    """The id of the alert opened for a device, once there is one."""

    def find() -> int | None:
        return scalar(
            dsn,
            "SELECT a.id FROM alerts a JOIN devices d ON d.num = a.device_num WHERE d.id = %s",
            (device,),
        )

    found = wait_until(find, 15, f"an alert of {device}")
    assert found is not None
    return found


def rows_to(dsn: str, receiver: str, alert_id: int | None = None) -> list[tuple[Any, ...]]:
    """(alert id, kind, state) of the outbox rows addressed to a receiver."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT alert_id, kind, state FROM notifications WHERE receiver = %s"
            " AND (%s::bigint IS NULL OR alert_id = %s) ORDER BY id",
            (receiver, alert_id, alert_id),
        ).fetchall()


def hooks_for(received: list[Received], alert_id: int) -> list[Received]:
    """Webhook posts about one alert."""
    return [r for r in received if r.body["alert"]["id"] == alert_id]


def test_maintenance_silence_mutes_the_unit_but_not_the_control_room(
    api: ApiServer,
    world: Endpoints,
    prefix: str,
    pub: Publisher,
    sms: FakeSmsGateway,
    receiver: WebhookReceiver,
) -> None:
    """An admin silences unit u1 for panel maintenance: its fire alarm still reaches the control
    room's webhook and SMS marked silenced (id and reason), the manager gets nothing, a major
    alert there reaches nobody, and both alerts carry their silence."""
    admin = token(world, "admin", "Admin Zhou")
    silence = call(
        api, admin, "POST", "/silences",
        {"unit_id": "u1", "duration_min": 120, "reason": "panel maintenance"},
    )  # fmt: skip
    sid = silence["id"]
    fire(pub, prefix, "utd-1")
    pub.publish(
        f"{prefix}/em-1/telemetry",
        {"ts": int(time.time() * 1000), "metrics": {"residual_current_ma": 420.0}},
    )
    fire_id = alert_of(world.dsn(), "utd-1")
    assert receiver.wait_for(lambda r: len(hooks_for(r, fire_id)) == 1, 15)
    hook = hooks_for(receiver.received, fire_id)[0]
    assert hook.signature_ok and hook.body["alert"]["silenced"] is True
    assert hook.body["alert"]["silence"]["id"] == sid
    assert hook.body["alert"]["silence"]["reason"] == "panel maintenance"
    assert f"silenced #{sid}" in hook.body["alert"]["message"]["en"]
    assert "panel maintenance" in hook.body["alert"]["message"]["zh-CN"]
    assert sms.wait_for(lambda r: any(x.body["to"] == CONTROL_ROOM for x in r), 15)
    text = next(str(x.body["text"]) for x in sms.requests if x.body["to"] == CONTROL_ROOM)
    assert f"silenced #{sid}" in text and "panel maintenance" in text
    major_id = alert_of(world.dsn(), "em-1")
    wait_until(
        lambda: (
            scalar(world.dsn(), "SELECT silenced_by FROM alerts WHERE id = %s", (major_id,)) == sid
        ),
        15,
        "major alert silenced",
    )
    # Outbox rows are written in the transaction that opened the alert: the muting is final.
    assert rows_to(world.dsn(), MANAGER) == []
    assert (
        scalar(world.dsn(), "SELECT count(*) FROM notifications WHERE alert_id = %s", (major_id,))
        == 0
    )
    assert [x for x in sms.requests if x.body["to"] == MANAGER] == []
    assert scalar(world.dsn(), "SELECT silenced_by FROM alerts WHERE id = %s", (fire_id,)) == sid
    detail = call(api, admin, "GET", f"/alerts/{fire_id}")
    assert detail["alert"]["silenced"] is True
    assert [h["comment"] for h in detail["history"] if h["kind"] == "silenced"] == [
        f"silence {sid}"
    ]
    shown = call(api, admin, "GET", f"/silences/{sid}")
    assert sorted(shown["alert_ids"]) == sorted([fire_id, major_id])
    assert shown["author"] == "Admin Zhou" and shown["covers_critical"] is True


def test_ending_a_silence_lets_alerts_reach_everyone_again(
    api: ApiServer,
    world: Endpoints,
    prefix: str,
    pub: Publisher,
    sms: FakeSmsGateway,
    receiver: WebhookReceiver,
) -> None:
    """The unit's operator ends the maintenance silence: the fire alarm still firing is told to
    the manager, and the next fire alarm reaches everyone, unmarked."""
    admin = token(world, "admin", "Admin Zhou")
    sid = call(
        api, admin, "POST", "/silences",
        {"unit_id": "u1", "duration_min": 120, "reason": "panel maintenance"},
    )["id"]  # fmt: skip
    fire(pub, prefix, "utd-1")
    first = alert_of(world.dsn(), "utd-1")
    assert receiver.wait_for(lambda r: len(hooks_for(r, first)) == 1, 15)
    assert rows_to(world.dsn(), MANAGER) == []

    with psycopg.connect(world.dsn(), autocommit=True) as conn:
        _, operator = store_tokens.create_token(conn, "Li (u1)", "operator", ("u1",))
    ended = call(api, operator, "POST", f"/silences/{sid}/end", {"comment": "panel back"})
    assert ended["state"] == "ended" and ended["ended_by"] == "Li (u1)"

    # The alarm that is still firing reaches the manager now (the control room already knew).
    wait_until(
        lambda: rows_to(world.dsn(), MANAGER, first) == [(first, "firing", "sent")],
        15,
        "the still-firing alarm told to the manager",
    )
    assert scalar(world.dsn(), "SELECT silenced_by FROM alerts WHERE id = %s", (first,)) is None
    assert (
        scalar(
            world.dsn(),
            "SELECT comment FROM alert_events WHERE alert_id = %s AND kind = 'unsilenced'",
            (first,),
        )
        == f"silence {sid} ended"
    )
    assert len(hooks_for(receiver.received, first)) == 1

    fire(pub, prefix, "utd-2")
    second = alert_of(world.dsn(), "utd-2")
    assert receiver.wait_for(lambda r: len(hooks_for(r, second)) == 1, 15)
    hook = hooks_for(receiver.received, second)[0]
    assert hook.body["alert"]["silenced"] is False and hook.body["alert"]["silence"] is None
    wait_until(
        lambda: rows_to(world.dsn(), MANAGER, second) == [(second, "firing", "sent")],
        15,
        "the next alarm told to the manager",
    )
    wait_until(
        lambda: rows_to(world.dsn(), CONTROL_ROOM, second) == [(second, "firing", "sent")],
        15,
        "the next alarm told to the control room",
    )
    assert scalar(world.dsn(), "SELECT silenced_by FROM alerts WHERE id = %s", (second,)) is None
