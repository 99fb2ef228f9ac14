"""The vertical slice on real Mosquitto and PostgreSQL: publish → store → alert → signed webhook."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from alerts.shape import AlertNotice
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.webhook import Received, WebhookReceiver
from tests.helpers import Publisher, scalar, wait_until

pytestmark = pytest.mark.e2e


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    p = Publisher(services, client_id=f"pub-{time.monotonic_ns()}")
    yield p
    p.close()


def count(db: Endpoints, table: str, where: str = "true") -> int:
    return int(scalar(db.dsn(), f"SELECT count(*) FROM {table} WHERE {where}"))  # noqa: S608


def test_reading_over_threshold_is_stored_alerted_and_posted(
    engine: Engine, db: Endpoints, prefix: str, receiver: WebhookReceiver, pub: Publisher
) -> None:
    """A residual current over 300 mA is stored, opens an alert and reaches the webhook signed."""
    ts = now_ms()
    pub.publish(
        f"{prefix}/em-1/telemetry", {"ts": ts, "seq": 1, "metrics": {"residual_current_ma": 350.0}}
    )
    assert receiver.wait_for(lambda r: len(r) >= 1, 15), "no webhook received"
    got = receiver.received[0]
    assert got.signature_ok
    assert got.body["status"] == "firing"
    alert = got.body["alert"]
    assert alert["rule_id"] == "residual_current_high"
    assert alert["device_id"] == "em-1" and alert["unit_name"] == "Test Mall"
    assert alert["value"] == 350.0 and alert["threshold"] == 300.0
    assert alert["severity"] == "major"
    assert "350 mA" in alert["message"]["en"] and "剩余电流" in alert["message"]["zh-CN"]
    assert got.body["idempotency_key"] == got.idempotency_key
    body = AlertNotice.model_validate(got.body)  # the documented shape, no field more or less
    assert (body.version, body.kind, body.alert.state, body.alert.count) == (
        "2",
        "firing",
        "firing",
        1,
    )
    dsn = db.dsn()
    assert (
        scalar(
            dsn,
            "SELECT value FROM telemetry t JOIN devices d ON d.num = t.device_num"
            " WHERE d.id = 'em-1'",
        )
        == 350.0
    )
    assert (
        scalar(dsn, "SELECT state FROM alerts WHERE rule_id = 'residual_current_high'") == "firing"
    )
    assert scalar(dsn, "SELECT kind FROM alert_events") == "opened"
    wait_until(
        lambda: count(db, "notifications", "state = 'sent'") == 1, 10, "outbox row marked sent"
    )


def test_reading_under_threshold_opens_nothing(
    engine: Engine, db: Endpoints, prefix: str, receiver: WebhookReceiver, pub: Publisher
) -> None:
    """Normal readings are stored and open no alert and send nothing."""
    pub.publish(
        f"{prefix}/em-1/telemetry",
        {"ts": now_ms(), "metrics": {"residual_current_ma": 120.0, "temp_c_1": 35.0}},
    )
    pub.publish(f"{prefix}/wl-1/telemetry", {"ts": now_ms(), "metrics": {"level_m": 2.95}})
    # Alerts are written in the same transaction as the readings: once rows exist, rules have run.
    wait_until(lambda: count(db, "telemetry") == 3, 15, "three readings stored")
    assert count(db, "alerts") == 0
    assert count(db, "notifications") == 0
    assert receiver.received == []


def test_every_device_type_crosses_a_threshold(
    engine: Engine, db: Endpoints, prefix: str, receiver: WebhookReceiver, pub: Publisher
) -> None:
    """Electrical, level, pressure and UTD each open their alert from one message."""
    t = now_ms()
    pub.publish(f"{prefix}/em-1/telemetry", {"ts": t, "metrics": {"temp_c_2": 82.0}})
    pub.publish(f"{prefix}/wl-1/telemetry", {"ts": t, "metrics": {"level_m": 2.0}})
    pub.publish(f"{prefix}/wp-1/telemetry", {"ts": t, "metrics": {"pressure_mpa": 0.05}})
    pub.publish(
        f"{prefix}/utd-1/event",
        {"ts": t, "seq": 9, "kind": "fire_alarm", "loop": 2, "point": 31, "text": "smoke"},
    )
    assert receiver.wait_for(lambda r: len(r) >= 4, 15)
    rules = {r.body["alert"]["rule_id"] for r in receiver.received}
    assert rules == {"cable_temp_high_2", "tank_level_low", "pressure_low", "fire_alarm"}
    assert count(db, "events") == 1


def test_condition_clearing_resolves_and_notifies(
    engine: Engine, db: Endpoints, prefix: str, receiver: WebhookReceiver, pub: Publisher
) -> None:
    """When pressure recovers the alert is resolved and a resolved message is sent."""
    t = now_ms()
    pub.publish(f"{prefix}/wp-1/telemetry", {"ts": t, "metrics": {"pressure_mpa": 0.05}})
    pub.publish(f"{prefix}/wp-1/telemetry", {"ts": t + 1000, "metrics": {"pressure_mpa": 0.30}})
    assert receiver.wait_for(lambda r: len(r) >= 2, 15)
    assert [r.body["status"] for r in receiver.received] == ["firing", "resolved"]
    resolved = AlertNotice.model_validate(receiver.received[1].body)
    assert (resolved.kind, resolved.alert.state, resolved.alert.value) == (
        "resolved",
        "resolved",
        0.30,
    )
    assert resolved.alert.cleared_at is not None
    assert scalar(db.dsn(), "SELECT state FROM alerts") == "resolved"


def test_repeated_breach_updates_the_open_alert(
    engine: Engine, db: Endpoints, prefix: str, receiver: WebhookReceiver, pub: Publisher
) -> None:
    """A breach that clears and returns keeps one alert row (refired), never two open ones."""
    t = now_ms()
    for i, v in enumerate([0.05, 0.30, 0.04]):
        pub.publish(
            f"{prefix}/wp-1/telemetry", {"ts": t + i * 1000, "metrics": {"pressure_mpa": v}}
        )

    def low(received: list[Received]) -> list[Received]:
        return [x for x in received if x.body["alert"]["rule_id"] == "pressure_low"]

    assert receiver.wait_for(lambda r: len(low(r)) >= 3, 15)
    assert count(db, "alerts", "rule_id = 'pressure_low'") == 1
    assert scalar(db.dsn(), "SELECT count FROM alerts WHERE rule_id = 'pressure_low'") == 2
    assert scalar(db.dsn(), "SELECT state FROM alerts WHERE rule_id = 'pressure_low'") == "firing"


def test_redelivered_message_is_stored_once(
    engine: Engine, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """The same message arriving twice (as after a lost ack) is stored once."""
    body = {"ts": now_ms(), "seq": 5, "metrics": {"level_m": 2.9, "battery_pct": 80.0}}
    pub.publish(f"{prefix}/wl-1/telemetry", body)
    wait_until(lambda: count(db, "telemetry") == 2, 15, "first copy stored")
    pub.publish(f"{prefix}/wl-1/telemetry", body)
    pub.publish(f"{prefix}/wl-1/telemetry", {"ts": now_ms() + 1, "metrics": {"level_m": 2.9}})
    wait_until(lambda: count(db, "telemetry") == 3, 15, "sentinel stored")
    assert count(db, "telemetry") == 3


def test_malformed_payload_goes_to_dead_letters(
    engine: Engine, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """Garbage and unknown devices are dead-lettered with a reason; good messages still flow."""
    pub.publish(f"{prefix}/em-1/telemetry", b"\x00\xffnot json")
    pub.publish(f"{prefix}/ghost/telemetry", {"ts": now_ms(), "metrics": {}})
    pub.publish(f"{prefix}/em-1/telemetry", {"ts": now_ms(), "metrics": {"temp_c_1": 30.0}})
    wait_until(lambda: count(db, "rejected_messages") == 2, 15, "two dead letters")
    wait_until(lambda: count(db, "telemetry") == 1, 15, "good message stored")
    reasons = scalar(
        db.dsn(),
        "SELECT string_agg(reason || ':' || coalesce(device_id, '-'), ','"
        " ORDER BY reason) FROM rejected_messages",
    )
    assert reasons == "malformed:em-1,unknown_device:ghost"


def test_webhook_retries_on_503_but_not_on_400(
    engine: Engine, db: Endpoints, prefix: str, receiver: WebhookReceiver, pub: Publisher
) -> None:
    """5xx answers are retried with backoff until delivered; a 400 gives up at once."""
    receiver.fail_next(503, 503)
    pub.publish(f"{prefix}/wp-1/telemetry", {"ts": now_ms(), "metrics": {"pressure_mpa": 0.05}})
    assert receiver.wait_for(lambda r: len(r) == 1, 20)
    wait_until(lambda: count(db, "notifications", "state = 'sent'") == 1, 10, "sent")
    assert scalar(db.dsn(), "SELECT attempts FROM notifications") == 3
    assert receiver.attempts == 3

    receiver.fail_next(400)
    pub.publish(f"{prefix}/wl-1/telemetry", {"ts": now_ms(), "metrics": {"level_m": 1.0}})
    wait_until(lambda: count(db, "notifications", "state = 'given_up'") >= 1, 20, "given up")
    row = scalar(
        db.dsn(), "SELECT attempts || ' ' || last_error FROM notifications WHERE state = 'given_up'"
    )
    assert row.startswith("1 HTTP 400")


def test_store_and_forward_batch_is_stored_once_and_opens_nothing_for_the_past(
    engine: Engine, db: Endpoints, prefix: str, receiver: WebhookReceiver, pub: Publisher
) -> None:
    """1,000 late, shuffled readings (some over the limit) are stored once, even when the whole
    batch is redelivered, and open no alert for the past."""
    import random

    now = now_ms()
    pub.publish(f"{prefix}/wl-1/telemetry", {"ts": now, "metrics": {"level_m": 2.95}})
    wait_until(lambda: count(db, "telemetry") == 1, 15, "current reading stored")
    readings = [
        {
            "ts": now - 3_600_000 + i * 1000,
            "seq": i,
            "metrics": {"level_m": 1.0 if i % 7 == 0 else 2.9},
        }
        for i in range(1000)
    ]
    random.Random(3).shuffle(readings)
    batch = {"readings": readings}
    pub.publish(f"{prefix}/wl-1/telemetry", batch)
    wait_until(lambda: count(db, "telemetry") == 1001, 15, "batch stored")
    pub.publish(f"{prefix}/wl-1/telemetry", batch)  # redelivered after a lost ack
    pub.publish(f"{prefix}/wl-1/telemetry", {"ts": now + 1, "metrics": {"level_m": 2.95}})
    wait_until(lambda: count(db, "telemetry") == 1002, 15, "sentinel stored")
    assert count(db, "telemetry") == 1002
    assert count(db, "alerts") == 0
    assert count(db, "rejected_messages") == 0
