"""Delivery receipts: an SMS is `delivered` only on the provider's word, and a receipt of
failure is a failed attempt that the retry policy tries again."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from api.server import ApiServer
from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from firesentry.serve import sms_receipts
from simulators.services.provider import FakeProvider
from simulators.services.sms import FakeAliyunSms, FakeSmsGateway, FakeTwilio
from store import registry as reg
from tests.api.conftest import api_options
from tests.helpers import Publisher, engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e
MANAGER = "+8613800000001"
TOKEN = "gw-receipts-token"


def _provider(kind: str) -> FakeProvider:
    if kind == "aliyun":
        return FakeAliyunSms("LTAI-test", "aliyun-secret").start()
    if kind == "twilio":
        return FakeTwilio("AC" + "0" * 32, "twilio-auth-token").start()
    return FakeSmsGateway(token=TOKEN).start()


def _config(kind: str, gw: FakeProvider, receipts_url: str) -> dict[str, Any]:
    """The provider as an operator configures it, with its receipts."""
    if kind == "aliyun":
        return {"kind": "aliyun", "url": gw.base_url + "/", "access_key_id": "LTAI-test",
                "access_key_secret": "aliyun-secret", "sign_name": "消防", "template_code": "SMS_1",
                "receipts": True, "receipt_token": TOKEN}  # fmt: skip
    if kind == "twilio":
        return {"kind": "twilio", "url": gw.base_url, "account_sid": "AC" + "0" * 32,
                "auth_token": "twilio-auth-token", "from_number": "+15005550006",
                "receipts": True, "status_callback": receipts_url}  # fmt: skip
    return {"kind": "generic", "url": gw.base_url + "/sms", "token": TOKEN, "receipts": True}


class Site:
    """An engine and its API in this process, an SMS provider that reports delivery, a panel."""

    def __init__(self, db: Endpoints, services: Endpoints, prefix: str, kind: str) -> None:
        self.db, self.prefix, self.kind = db, prefix, kind
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            reg.add_unit(conn, "u1", "Lotus Hotpot", district="D1")
            reg.add_device(conn, "utd-1", "u1", DeviceType.UTD)
            reg.add_contact(conn, "Zhang Wei", "fire_safety_manager", unit_id="u1", phone=MANAGER)
        self.gw = _provider(kind)
        # The API's port is known once it listens: take a free one first.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.receipts_url = f"http://127.0.0.1:{port}/api/v1/receipts/sms/gw"
        settings = engine_settings(
            prefix,
            f"ingest-{uuid.uuid4().hex[:8]}",
            notify={"sms": {"gw": _config(kind, self.gw, self.receipts_url)}, "backoff_max_s": 0.3},
        )
        self.api = ApiServer(
            api_options(db, sms_receipts=sms_receipts(settings)), "127.0.0.1", port
        ).start()
        self.gw.receipts = True
        # Aliyun pushes to the URL set in its console, with the secret in it.
        self.gw.receipts_to = self.receipts_url + (f"?token={TOKEN}" if kind == "aliyun" else "")
        self.engine = Engine(settings, db)
        self.engine.start()
        assert self.engine.consumer.wait_connected(10)
        self.pub = Publisher(services, client_id=f"utd-{uuid.uuid4().hex[:8]}")

    def fire(self) -> None:
        """The panel reports a fire alarm."""
        body = {"ts": int(time.time() * 1000), "seq": 1, "kind": "fire_alarm"}
        self.pub.publish(f"{self.prefix}/utd-1/event", body)

    def state(self) -> str | None:
        """The state of the manager's SMS."""
        return scalar(
            self.db.dsn(), "SELECT state FROM notifications WHERE receiver = %s", (MANAGER,)
        )

    def close(self) -> None:
        """Stop everything."""
        self.pub.close()
        self.engine.stop()
        self.api.stop()
        self.gw.stop()


@pytest.fixture(params=["generic", "aliyun", "twilio"])
def site(db: Endpoints, services: Endpoints, prefix: str, request: Any) -> Iterator[Site]:
    """A site whose SMS provider (each kind) sends delivery receipts."""
    s = Site(db, services, prefix, request.param)
    yield s
    s.close()


def test_an_sms_is_delivered_only_when_the_provider_says_so(site: Site) -> None:
    """Accepted by the provider is `sent`; its receipt makes it `delivered`, with the time."""
    site.fire()
    assert site.gw.wait_for(lambda got: len(got) == 1, 20), "SMS accepted"
    wait_until(lambda: site.state() == "delivered", 20, "the receipt applied")
    assert scalar(
        site.db.dsn(),
        "SELECT delivered_at >= sent_at AND receipt IN ('delivered', 'DELIVERED')"
        " FROM notifications"
        " WHERE receiver = %s",
        (MANAGER,),
    )
    assert site.gw.receipt_answers == [(200, True)]


def test_a_receipt_of_failure_is_retried_and_the_retry_delivered(site: Site) -> None:
    """The phone was off: the receipt says undelivered, the outbox tries again by the fire
    alarm's retry policy, and the second message's receipt says delivered."""
    site.gw.undeliverable_next(1)
    site.fire()
    assert site.gw.wait_for(lambda got: len(got) == 2, 30), "sent again after the receipt"
    wait_until(lambda: site.state() == "delivered", 20, "the second receipt applied")
    dsn = site.db.dsn()
    assert scalar(dsn, "SELECT attempts FROM notifications WHERE receiver = %s", (MANAGER,)) == 2
    assert site.gw.receipt_answers == [(200, False), (200, True)]
    said = scalar(
        dsn,
        "SELECT array_agg(ROW(r.delivered, r.error <> '')::text ORDER BY r.id)"
        " FROM delivery_receipts r JOIN notifications n ON n.id = r.notification_id"
        " WHERE n.receiver = %s AND r.applied_at IS NOT NULL",
        (MANAGER,),
    )
    assert said == ["(f,t)", "(t,f)"], "both kept and applied: a failure with its reason, then ok"


def test_a_forged_receipt_is_refused_and_changes_nothing(site: Site) -> None:
    """Someone who knows the URL but not the gateway's token cannot mark a fire alarm's SMS
    delivered (or failed): 401, and nothing is kept."""
    site.gw.receipts = False  # the real receipt never comes: only the forgery
    site.fire()
    assert site.gw.wait_for(lambda got: len(got) == 1, 20)
    key = site.gw.requests[0].idempotency_key
    wait_until(lambda: site.state() == "sent", 20, "sent, no receipt yet")
    if site.kind == "aliyun":
        url = site.receipts_url + "?token=guess"
        data = f'[{{"success": true, "err_code": "DELIVERED", "out_id": "{key}"}}]'.encode()
        headers = {"Content-Type": "application/json"}
    elif site.kind == "twilio":
        url = f"{site.receipts_url}?idempotency_key={key}"
        data = b"MessageSid=SM1&MessageStatus=delivered"
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}  # fmt: skip
    else:
        url = site.receipts_url
        data = f'{{"id": "{key}", "status": "delivered"}}'.encode()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer guess"}
    forged = urllib.request.Request(url, data=data, headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=5)
    assert refused.value.code == 401
    refused.value.close()
    assert scalar(site.db.dsn(), "SELECT count(*) FROM delivery_receipts") == 0
    assert site.state() == "sent"
