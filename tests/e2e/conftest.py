"""End-to-end fixtures: a seeded fleet, a webhook receiver and an engine on the test services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.sms import FakeSmsGateway
from simulators.services.webhook import WebhookReceiver
from store import registry as reg
from tests.helpers import engine_settings

SECRET = "test-webhook-secret"
FLEET = {
    "em-1": DeviceType.ELECTRICAL,
    "wl-1": DeviceType.WATER_LEVEL,
    "wp-1": DeviceType.WATER_PRESSURE,
    "utd-1": DeviceType.UTD,
}


@pytest.fixture()
def fleet(db: Endpoints) -> dict[str, DeviceType]:
    """One unit with a device of each type."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Test Mall", district="D1")
        for dev_id, typ in FLEET.items():
            attrs: dict[str, Any] = {"tank_depth_m": 3.0} if typ is DeviceType.WATER_LEVEL else {}
            reg.add_device(conn, dev_id, "u1", typ, attributes=attrs)
    return FLEET


@pytest.fixture()
def sms() -> Iterator[FakeSmsGateway]:
    """The local fake SMS gateway (bearer token gw-token)."""
    gw = FakeSmsGateway(token="gw-token").start()
    yield gw
    gw.stop()


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    """A local webhook server that verifies signatures."""
    r = WebhookReceiver(SECRET.encode()).start()
    yield r
    r.stop()


@pytest.fixture()
def ops() -> Iterator[WebhookReceiver]:
    """The control room's own webhook receiver (the same secret): it stays up, and hears of
    failing channels and of people who cannot be reached."""
    r = WebhookReceiver(SECRET.encode()).start()
    yield r
    r.stop()


@pytest.fixture()
def engine(
    db: Endpoints, prefix: str, receiver: WebhookReceiver, fleet: dict[str, DeviceType]
) -> Iterator[Engine]:
    """The engine, in this process, subscribed and ready."""
    settings = engine_settings(
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        notify={"webhooks": {"test": {"url": receiver.url, "secret": SECRET}}},
    )
    e = Engine(settings, db)
    e.start()
    assert e.consumer.wait_connected(10), "engine did not connect to the broker"
    yield e
    e.stop()


@pytest.fixture()
def unit(db: Endpoints) -> Endpoints:
    """One shop with a fire panel (UTD), an electrical monitor and their people."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Lotus Hotpot", address="12 Jiefang Rd", district="D1")
        reg.add_device(conn, "utd-1", "u1", DeviceType.UTD, location="1F fire control room")
        reg.add_device(conn, "em-1", "u1", DeviceType.ELECTRICAL, location="B1 switch room")
    return db
