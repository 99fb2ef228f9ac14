"""Fire alarms first (火警优先): a telemetry backlog in the broker never delays a fire alarm.

The engine is down while the fleet's telemetry piles up in its broker session; a panel then
reports a fire. When the engine comes back, the fire alarm must be written (and its alert
opened) before the backlog, not after it: it travels in a session of its own.
"""

from __future__ import annotations

import time
import uuid

import msgspec
import psycopg
import pytest

from bench.rawpub import RawPublisher
from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.webhook import WebhookReceiver
from store import registry as reg
from tests.e2e.conftest import SECRET
from tests.helpers import engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e
BACKLOG = 30_000
DEVICES = 100


@pytest.fixture()
def site(db: Endpoints) -> None:
    """A unit with a panel and a hundred electrical monitors."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Lotus Hotpot", district="D1")
        reg.add_device(conn, "utd-1", "u1", DeviceType.UTD)
        for i in range(DEVICES):
            reg.add_device(conn, f"em-{i}", "u1", DeviceType.ELECTRICAL)


def _engine(db: Endpoints, prefix: str, client_id: str, receiver: WebhookReceiver) -> Engine:
    settings = engine_settings(
        prefix, client_id, notify={"webhooks": {"ops": {"url": receiver.url, "secret": SECRET}}}
    )
    e = Engine(settings, db)
    e.start()
    assert e.consumer.wait_connected(10)
    return e


@pytest.fixture()
def client_id() -> str:
    """ingest's client id: its sessions outlive the engine's restart."""
    return f"ingest-{uuid.uuid4().hex[:8]}"


def test_a_fire_alarm_behind_a_telemetry_backlog_is_written_first(
    db: Endpoints, services: Endpoints, prefix: str, site: None, client_id: str,
    receiver: WebhookReceiver,
) -> None:  # fmt: skip
    """30,000 readings queued while the engine was down, then a fire alarm: the alarm's event
    is committed before most of the backlog (measured by transaction order), and the control
    room is told of it while readings are still being written."""
    _engine(db, prefix, client_id, receiver).stop()  # its sessions now queue for it
    pub = RawPublisher(services.mqtt_host, services.mqtt_port, f"fleet-{uuid.uuid4().hex[:8]}")
    try:
        now = int(time.time() * 1000)
        packets = [
            pub.packet(
                f"{prefix}/em-{i % DEVICES}/telemetry",
                msgspec.json.encode(
                    {"ts": now - BACKLOG + i, "seq": i, "metrics": {"residual_current_ma": 40.0}}
                ),
            )
            for i in range(BACKLOG)
        ]
        for start in range(0, BACKLOG, 5_000):
            pub.send(packets[start : start + 5_000])
        fire = {"ts": now, "seq": 1, "kind": "fire_alarm", "loop": 1, "point": 12}
        pub.send([pub.packet(f"{prefix}/utd-1/event", msgspec.json.encode(fire))])
        assert pub.drain(60), "the broker took every message"
    finally:
        pub.close()

    engine = _engine(db, prefix, client_id, receiver)
    try:
        assert receiver.wait_for(lambda got: bool(got), 30), "the fire alarm's notice"
        wait_until(
            lambda: scalar(db.dsn(), "SELECT count(*) FROM telemetry") == BACKLOG,
            120,
            "the backlog written",
        )
        assert scalar(db.dsn(), "SELECT count(*) FROM events") == 1
        # Batches commit one after another on one connection: a later one has a higher xid.
        after = scalar(
            db.dsn(),
            "SELECT count(*) FROM telemetry"
            " WHERE xmin::text::bigint > (SELECT xmin::text::bigint FROM events)",
        )
        assert after >= BACKLOG // 2, f"only {after} of {BACKLOG} readings were written after it"
    finally:
        engine.stop()
