"""Failover by person: a fire alarm reaches the unit's manager by e-mail when SMS keeps failing,
and the control room hears of anyone it cannot reach at all."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.sms import FakeSmsGateway
from simulators.services.smtp import FakeSmtpServer
from simulators.services.webhook import Received, WebhookReceiver
from store import registry as reg
from tests.e2e.conftest import SECRET
from tests.e2e.test_supervision import DatabaseLink
from tests.helpers import Publisher, engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e
ZHANG_PHONE, ZHANG_MAIL = "+8613800000001", "zhang@lotus.example"
DUTY_PHONE = "+8613900000099"


@pytest.fixture()
def smtp() -> Iterator[FakeSmtpServer]:
    """The mail server: it stays up."""
    s = FakeSmtpServer().start()
    yield s
    s.stop()


@pytest.fixture()
def road(sms: FakeSmsGateway) -> Iterator[DatabaseLink]:
    """The road to the SMS gateway, which the test closes."""
    link = DatabaseLink(sms.port)
    yield link
    link.close()


# Fire alarms by SMS only (as the default routing's later tiers are): e-mail only as failover.
SMS_ONLY = """
version: 1
group_wait_s: 0
routes:
  - name: critical
    match: {severity: [critical]}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager, control_room], channels: [sms]}
"""


def _engine(
    db: Endpoints,
    prefix: str,
    ops: WebhookReceiver,
    road: DatabaseLink,
    smtp: FakeSmtpServer,
    routing: Path | None = None,
) -> Engine:
    settings = engine_settings(
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        notify={
            **({"routing_file": str(routing)} if routing else {}),
            "webhooks": {"ops": {"url": ops.url, "secret": SECRET}},
            "sms": {
                "gw": {
                    "kind": "generic",
                    "url": f"http://127.0.0.1:{road.port}/sms",
                    "token": "gw-token",
                }
            },
            "email": {
                "host": "127.0.0.1",
                "port": smtp.port,
                "sender": "alarm@firesentry.test",
                "starttls": False,
            },
            "failover_after_s": 1.0,
            "channel_check_s": 0.2,
            "channel_alert_after_s": 600.0,
            "backoff_max_s": 0.3,
        },
    )
    e = Engine(settings, db)
    e.start()
    assert e.consumer.wait_connected(10)
    return e


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    """The unit's user information transmission device."""
    p = Publisher(services, client_id=f"utd-{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def _site(db: Endpoints, manager_phone: str, manager_mail: str | None) -> None:
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Lotus Hotpot", district="D1")
        reg.add_device(conn, "utd-1", "u1", DeviceType.UTD)
        reg.add_contact(
            conn, "Zhang Wei", "fire_safety_manager", unit_id="u1", phone=manager_phone,
            email=manager_mail,
        )  # fmt: skip
        reg.add_contact(conn, "Duty officer Wu", "control_room", district="D1", phone=DUTY_PHONE)


def _fire(pub: Publisher, prefix: str) -> None:
    pub.publish(
        f"{prefix}/utd-1/event",
        {"ts": int(time.time() * 1000), "seq": 1, "kind": "fire_alarm", "loop": 1, "point": 12},
    )


def _unreachable(r: WebhookReceiver) -> list[Received]:
    return [x for x in r.received if x.body["alert"]["rule_id"] == "party_unreachable"]


def test_sms_down_the_manager_gets_the_fire_alarm_by_email_and_no_late_sms(
    db: Endpoints, prefix: str, ops: WebhookReceiver, road: DatabaseLink,
    smtp: FakeSmtpServer, sms: FakeSmsGateway, pub: Publisher, tmp_path: Path,
) -> None:  # fmt: skip
    """Fire alarms go by SMS, and the SMS gateway refuses connections: a minute (here 1 s)
    later the fire alarm goes to the manager's mailbox; the control room, whose duty officer
    has only a phone, is told he cannot be reached; when SMS works again the manager's SMS,
    delivered by e-mail already, is cancelled, not sent late, and the officer's goes out."""
    _site(db, ZHANG_PHONE, ZHANG_MAIL)
    routing = tmp_path / "routing.yaml"
    routing.write_text(SMS_ONLY)
    road.down()
    engine = _engine(db, prefix, ops, road, smtp, routing)
    try:
        _fire(pub, prefix)
        assert smtp.wait_for(lambda got: any(ZHANG_MAIL in m.rcpt_tos for m in got), 30), (
            "fire alarm by e-mail"
        )
        mail = next(m for m in smtp.messages if ZHANG_MAIL in m.rcpt_tos)
        assert "火警" in str(mail.message["Subject"])
        rows = wait_until(
            lambda: scalar(
                db.dsn(),
                "SELECT count(*) FROM notifications WHERE channel = 'sms' AND receiver = %s"
                " AND state = 'cancelled' AND last_error LIKE 'delivered over email%%'",
                (ZHANG_PHONE,),
            ),
            10,
            "the manager's waiting SMS cancelled",
        )
        assert rows == 1
        assert ops.wait_for(lambda got: bool(_unreachable(ops)), 20), "control room told"
        (told,) = _unreachable(ops)
        text = told.body["alert"]["message"]["zh-CN"]
        assert "Duty officer Wu" in text and "值班室" in text and "短信" in text, text

        road.up()
        assert sms.wait_for(lambda got: any(x.body["to"] == DUTY_PHONE for x in got), 30)
        assert not [x for x in sms.requests if x.body["to"] == ZHANG_PHONE], "no late SMS"
        assert len(smtp.keys) == len(set(smtp.keys)), "each mail once"
        assert len(_unreachable(ops)) == 1, "told once"
    finally:
        engine.stop()


def test_a_person_told_by_email_already_is_not_mailed_twice_nor_reported_unreachable(
    db: Endpoints, prefix: str, ops: WebhookReceiver, road: DatabaseLink,
    smtp: FakeSmtpServer, sms: FakeSmsGateway, pub: Publisher,
) -> None:  # fmt: skip
    """With the default routing a fire alarm goes by SMS and e-mail at once. SMS down: the
    manager, who got the e-mail, gets no second one and is not reported unreachable; the duty
    officer, phone only, is (and only he)."""
    _site(db, ZHANG_PHONE, ZHANG_MAIL)
    road.down()
    engine = _engine(db, prefix, ops, road, smtp)
    try:
        _fire(pub, prefix)
        assert ops.wait_for(lambda got: bool(_unreachable(ops)), 30), "control room told"
        # Zhang's SMS failed as long as Wu's: the same look at the outbox settled both.
        wait_until(
            lambda: scalar(
                db.dsn(),
                "SELECT count(*) FROM notifications WHERE channel = 'sms' AND receiver = %s"
                " AND failed_over_at IS NOT NULL",
                (ZHANG_PHONE,),
            ),
            10,
            "the manager's SMS looked at",
        )
        named = scalar(
            db.dsn(),
            "SELECT array_agg(DISTINCT payload->'alert'->>'device_id') FROM notifications"
            " WHERE payload->'alert'->>'rule_id' = 'party_unreachable'",
        )
        assert named == ["Duty officer Wu"], named
        assert [m.rcpt_tos for m in smtp.messages] == [[ZHANG_MAIL]], "one e-mail"
    finally:
        engine.stop()


def test_a_wrong_number_without_email_is_told_to_the_control_room(
    db: Endpoints, prefix: str, ops: WebhookReceiver, road: DatabaseLink,
    smtp: FakeSmtpServer, sms: FakeSmsGateway, pub: Publisher,
) -> None:  # fmt: skip
    """The manager's number was entered without its country code and there is no e-mail: the
    SMS is refused at once, and the control room (its webhook and its duty officer's phone) is
    told whom it must call, naming the unit and the alert."""
    _site(db, "0571-8800123", None)
    engine = _engine(db, prefix, ops, road, smtp)
    try:
        _fire(pub, prefix)
        assert ops.wait_for(lambda got: bool(_unreachable(ops)), 30), "control room told"
        (told,) = _unreachable(ops)
        assert told.signature_ok
        alert = told.body["alert"]
        assert alert["severity"] == "critical" and alert["unit_id"] == "Lotus Hotpot"
        assert "Zhang Wei" in alert["message"]["en"] and "E.164" in alert["message"]["en"]
        assert sms.wait_for(
            lambda got: any(
                x.body["to"] == DUTY_PHONE and "无法通知" in x.body["text"] for x in got
            ),
            20,
        ), "the duty officer's phone hears it"
        state = scalar(
            db.dsn(),
            "SELECT state FROM notifications WHERE receiver = '0571-8800123'",
        )
        assert state == "given_up"
        assert not smtp.messages, "nobody has an e-mail address"
    finally:
        engine.stop()
