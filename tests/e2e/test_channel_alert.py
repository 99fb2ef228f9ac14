"""A failing notification channel is an alert: the control room hears of it through the
channels that work, and hears again when it delivers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.sms import FakeSmsGateway
from simulators.services.webhook import Received, WebhookReceiver
from store import alert_plan, channels
from store import registry as reg
from tests.e2e.conftest import SECRET
from tests.e2e.test_supervision import DatabaseLink
from tests.helpers import engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e
DUTY_PHONE = "+8613900000099"


@pytest.fixture()
def hook() -> Iterator[WebhookReceiver]:
    """The unit's integration webhook: the one that goes down."""
    r = WebhookReceiver(SECRET.encode()).start()
    yield r
    r.stop()


@pytest.fixture()
def link(hook: WebhookReceiver) -> Iterator[DatabaseLink]:
    """The road to the failing webhook."""
    road = DatabaseLink(hook.port)
    yield road
    road.close()


@pytest.fixture()
def engine(
    db: Endpoints, prefix: str, ops: WebhookReceiver, sms: FakeSmsGateway, link: DatabaseLink
) -> Iterator[Engine]:
    """An engine with two webhooks and SMS, opening a channel alert after 1 s of failures."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Lotus Hotpot", district="D1")
        reg.add_contact(conn, "Duty officer Wu", "control_room", district="D1", phone=DUTY_PHONE)
    settings = engine_settings(
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        notify={
            "webhooks": {
                "hook": {"url": f"http://127.0.0.1:{link.port}/hook", "secret": SECRET},
                "ops": {"url": ops.url, "secret": SECRET},
            },
            "sms": {"gw": {"kind": "generic", "url": sms.url, "token": "gw-token"}},
            "channel_alert_after_s": 1.0,
            "channel_check_s": 0.2,
            "backoff_max_s": 0.3,
        },
    )
    e = Engine(settings, db)
    e.start()
    assert e.consumer.wait_connected(10)
    yield e
    e.stop()


def _channel_notices(r: WebhookReceiver, status: str) -> list[Received]:
    return [
        x
        for x in r.received
        if x.body["alert"]["rule_id"] == "channel_failing" and x.body["status"] == status
    ]


def test_a_failing_webhook_is_told_to_the_control_room_and_cleared_when_it_delivers(
    engine: Engine, db: Endpoints, hook: WebhookReceiver, ops: WebhookReceiver,
    sms: FakeSmsGateway, link: DatabaseLink,
) -> None:  # fmt: skip
    """The unit's webhook refuses connections: after the threshold the control room's webhook
    and the duty officer's SMS say which channel fails and how many messages wait (never
    through the failing webhook); once it delivers, both hear it is back and the alert clears."""
    link.down()
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        body = {"version": "2", "status": "firing", "kind": "firing",
                "alert": {"id": 7, "severity": "critical"}}  # fmt: skip
        alert_plan.enqueue(conn, None, "webhook", "hook", body)
        channels.notify_outbox(conn)
    assert ops.wait_for(lambda got: bool(_channel_notices(ops, "firing")), 20), "channel alert"
    (told,) = _channel_notices(ops, "firing")
    assert told.signature_ok and told.body["alert"]["device_id"] == "webhook:hook"
    assert "webhook:hook" in told.body["alert"]["message"]["en"]
    assert "1 messages waiting" in told.body["alert"]["message"]["en"]
    assert sms.wait_for(lambda got: any(x.body["to"] == DUTY_PHONE for x in got), 20)
    text = next(str(x.body["text"]) for x in sms.requests if x.body["to"] == DUTY_PHONE)
    assert "webhook:hook" in text and "通知通道" in text
    assert scalar(db.dsn(), "SELECT count(*) FROM channel_alerts WHERE cleared_at IS NULL") == 1
    assert scalar(db.dsn(), "SELECT count(*) FROM notifications WHERE receiver = 'hook'") == 1, (
        "the failing webhook itself is not told"
    )

    link.up()
    assert hook.wait_for(lambda got: len(got) == 1, 20), "the waiting notification delivered"
    assert ops.wait_for(lambda got: bool(_channel_notices(ops, "resolved")), 20), "all clear"
    wait_until(
        lambda: (
            scalar(db.dsn(), "SELECT count(*) FROM channel_alerts WHERE cleared_at IS NULL") == 0
        ),
        10,
        "channel alert cleared",
    )
    assert len(_channel_notices(ops, "firing")) == 1, "told once, not every check"
