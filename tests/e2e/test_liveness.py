"""Liveness an operator can believe: a device's status follows the last thing it said, in order,
and replayed store-and-forward readings never clear an offline alert opened after them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.webhook import WebhookReceiver
from store import registry as reg
from tests.e2e.conftest import SECRET
from tests.helpers import Publisher, engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture()
def engine(db: Endpoints, prefix: str, receiver: WebhookReceiver) -> Iterator[Engine]:
    """An engine over a monitor that beats every second (offline after 3 s of silence) and a
    level sensor with the default minute."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Lotus Hotpot", district="D1")
        reg.add_device(conn, "em-1", "u1", DeviceType.ELECTRICAL, heartbeat_s=1)
        reg.add_device(conn, "wl-1", "u1", DeviceType.WATER_LEVEL)
    settings = engine_settings(
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        rules={"silence_check_s": 0.2},
        notify={"webhooks": {"hook": {"url": receiver.url, "secret": SECRET}}},
    )
    e = Engine(settings, db)
    e.start()
    assert e.consumer.wait_connected(10)
    yield e
    e.stop()


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    """The devices' side."""
    p = Publisher(services, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def _stored(db: Endpoints, pub: Publisher, prefix: str, device: str, ts: int, **m: Any) -> None:
    """Publish a reading and wait until it is in the database (evaluated in that batch)."""
    before = scalar(db.dsn(), "SELECT count(*) FROM telemetry")
    pub.publish(f"{prefix}/{device}/telemetry", {"ts": ts, "metrics": m})
    wait_until(
        lambda: scalar(db.dsn(), "SELECT count(*) FROM telemetry") > before, 15, "reading stored"
    )


def _status(db: Endpoints, device: str) -> str:
    return str(scalar(db.dsn(), "SELECT status FROM device_liveness WHERE id = %s", (device,)))


def test_a_will_after_a_reading_wins(
    engine: Engine, db: Endpoints, pub: Publisher, prefix: str
) -> None:
    """A level sensor sends a reading and drops at once (its will says offline): once the
    reading's last_seen is written (seconds later, batched), the device is still offline."""
    now = int(time.time() * 1000)
    _stored(db, pub, prefix, "wl-1", now - 1000, level_m=2.9)
    wait_until(lambda: _status(db, "wl-1") == "online", 15, "first reading makes it online")
    ts = int(time.time() * 1000)
    pub.publish(f"{prefix}/wl-1/telemetry", {"ts": ts, "metrics": {"level_m": 2.9}})
    pub.publish(f"{prefix}/wl-1/status", b"offline")

    def flushed(at: int) -> bool:
        # Another device's traffic drives the batches that flush last_seen.
        pub.publish(f"{prefix}/em-1/telemetry", {"ts": int(time.time() * 1000), "metrics": {}})
        seen = scalar(db.dsn(), "SELECT last_seen FROM devices WHERE id = 'wl-1'")
        return seen is not None and int(seen.timestamp() * 1000) >= at

    wait_until(lambda: flushed(ts), 20, "the last reading's last_seen written", interval=0.5)
    assert scalar(db.dsn(), "SELECT status FROM devices WHERE id = 'wl-1'") == "offline"
    assert _status(db, "wl-1") == "offline"
    # Back on line: its next message after the will makes it online again.
    back = int(time.time() * 1000)
    _stored(db, pub, prefix, "wl-1", back, level_m=2.9)
    wait_until(lambda: flushed(back), 20, "last_seen written again", interval=0.5)
    assert _status(db, "wl-1") == "online"


def test_replayed_readings_do_not_clear_an_offline_alert_opened_after_them(
    engine: Engine, db: Endpoints, pub: Publisher, prefix: str, receiver: WebhookReceiver
) -> None:
    """The monitor goes silent and its offline alert opens; it then uploads readings stored
    while its 4G link was down, all from before the alert: the alert stays open, nobody is told
    twice; its first reading sent after the alert opened clears it."""
    t0 = int(time.time() * 1000)
    _stored(db, pub, prefix, "em-1", t0, residual_current_ma=20.0)

    def offline_notices(status: str) -> list[Any]:
        return [
            r
            for r in receiver.received
            if r.body["alert"]["rule_id"] == "device_offline" and r.body["status"] == status
        ]

    wait_until(lambda: offline_notices("firing"), 20, "offline alert notified")
    opened_at = scalar(db.dsn(), "SELECT opened_at FROM alerts WHERE rule_id = 'device_offline'")
    # Store-and-forward: readings from between t0 and the alert, uploaded now.
    for k in range(1, 3):
        _stored(db, pub, prefix, "em-1", t0 + k * 500, residual_current_ma=20.0)
    assert offline_notices("resolved") == []
    assert scalar(db.dsn(), "SELECT state FROM alerts WHERE rule_id = 'device_offline'") == "firing"
    fresh = int(time.time() * 1000)
    assert fresh > int(opened_at.timestamp() * 1000)
    _stored(db, pub, prefix, "em-1", fresh, residual_current_ma=20.0)
    wait_until(lambda: offline_notices("resolved"), 15, "a fresh reading clears it")
    assert len(offline_notices("firing")) == 1, "the replay must not re-open and re-notify"
    assert scalar(db.dsn(), "SELECT count(*) FROM alerts WHERE rule_id = 'device_offline'") == 1
