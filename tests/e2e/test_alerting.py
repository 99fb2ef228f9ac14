"""Multi-party notification on real services: routing by role, escalation, grouping, silences."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from alerts import actions
from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.provider import ProviderRequest
from simulators.services.robots import FakeWeCom
from simulators.services.sms import FakeSmsGateway
from store import registry as reg
from tests.helpers import Publisher, engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e

ROUTING = """
version: 1
timezone: Asia/Shanghai
group_wait_s: 0.5
rate_limits: {sms: {max: 3, window_min: 60}}
routes:
  - name: critical
    match: {severity: [critical]}
    tiers:
      - after_min: 0
        roles: [fire_safety_manager, property_manager, grid_worker, fire_supervisor]
        channels: [sms]
        robots: [ops]
  - name: major
    match: {severity: [major]}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager], channels: [sms]}
      - {after_min: 0.03, roles: [property_manager], channels: [sms]}
  - name: default
    match: {}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager], channels: [sms]}
"""
MANAGER, PROPERTY, GRID, SUPERVISOR, QUIET = (
    "+8613800000001",
    "+8613800000002",
    "+8613800000003",
    "+8613800000004",
    "+8613800000005",
)


@pytest.fixture()
def wecom() -> Iterator[FakeWeCom]:
    robot = FakeWeCom(["ops-key"]).start()
    yield robot
    robot.stop()


@pytest.fixture()
def world(db: Endpoints) -> Endpoints:
    """Unit u1 (district D1) with a device of each type and its parties; u2 whose manager sleeps."""
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Riverside Mall", district="D1")
        reg.add_unit(conn, "u2", "Night School", district="D2")
        for i in range(1, 7):
            reg.add_device(conn, f"em-{i}", "u1", DeviceType.ELECTRICAL)
        reg.add_device(conn, "utd-1", "u1", DeviceType.UTD)
        reg.add_device(conn, "em-q", "u2", DeviceType.ELECTRICAL)
        for role, phone in (
            ("fire_safety_manager", MANAGER),
            ("property_manager", PROPERTY),
            ("grid_worker", GRID),
        ):
            reg.add_contact(conn, role, role, unit_id="u1", phone=phone, locale="zh-CN")
        reg.add_contact(
            conn, "Supervisor Zhao", "fire_supervisor", district="D1", phone=SUPERVISOR, locale="en"
        )
        cid = reg.add_contact(
            conn, "Sleeping manager", "fire_safety_manager", unit_id="u2", phone=QUIET
        )
        conn.execute(
            "UPDATE contacts SET quiet_start = %s, quiet_end = %s WHERE id = %s",
            ((now - dt.timedelta(hours=1)).time(), (now + dt.timedelta(hours=1)).time(), cid),
        )
    return db


@pytest.fixture()
def engine(
    world: Endpoints, prefix: str, tmp_path: Path, sms: FakeSmsGateway, wecom: FakeWeCom
) -> Iterator[Engine]:
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    settings = engine_settings(
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        rules={"silence_check_s": 0.2},
        notify={
            "routing_file": str(routing),
            "sms": {"gw": {"kind": "generic", "url": sms.url, "token": "gw-token"}},
            "robots": {"ops": {"kind": "wecom", "url": wecom.robot_url("ops-key")}},
        },
    )
    e = Engine(settings, world)
    e.start()
    assert e.consumer.wait_connected(10)
    yield e
    e.stop()


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    p = Publisher(services, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def to(phone: str) -> Any:
    return lambda reqs: [r for r in reqs if r.body.get("to") == phone]


def phones(reqs: list[ProviderRequest]) -> list[str]:
    return sorted(str(r.body["to"]) for r in reqs)


def now_ms() -> int:
    return int(time.time() * 1000)


def test_every_party_gets_a_critical_alert(
    engine: Engine, prefix: str, pub: Publisher, sms: FakeSmsGateway, wecom: FakeWeCom
) -> None:
    """A fire alarm reaches the unit's manager, property manager, grid worker, the district
    supervisor (in English) and the control room's robot, at once."""
    pub.publish(f"{prefix}/utd-1/event", {"ts": now_ms(), "seq": 1, "kind": "fire_alarm"})
    assert sms.wait_for(lambda r: len(r) >= 4, 20), phones(sms.requests)
    assert phones(sms.requests) == [MANAGER, PROPERTY, GRID, SUPERVISOR]
    texts = {str(r.body["to"]): str(r.body["text"]) for r in sms.requests}
    assert "Riverside Mall" in texts[MANAGER] and "火警" in texts[MANAGER]
    assert "FIRE ALARM" in texts[SUPERVISOR]
    assert wecom.wait_for(lambda r: len(r) == 1, 10)
    assert sms.duplicate_keys() == set()


def test_warning_in_quiet_hours_is_held(
    engine: Engine, world: Endpoints, prefix: str, pub: Publisher, sms: FakeSmsGateway
) -> None:
    """A battery warning for a contact inside quiet hours waits for the morning; nothing is sent."""
    pub.publish(f"{prefix}/em-q/telemetry", {"ts": now_ms(), "metrics": {"battery_pct": 10.0}})
    row = wait_until(
        lambda: scalar(
            world.dsn(),
            "SELECT next_attempt_at - now() FROM notifications"
            " WHERE receiver = %s AND state = 'pending'",
            (QUIET,),
        ),
        15,
        "held notification",
    )
    assert dt.timedelta(minutes=50) < row < dt.timedelta(minutes=61)
    assert to(QUIET)(sms.requests) == []


def test_escalates_without_ack(
    engine: Engine, world: Endpoints, prefix: str, pub: Publisher, sms: FakeSmsGateway
) -> None:
    """A major alert nobody acknowledges goes to the property manager after the tier delay."""
    pub.publish(
        f"{prefix}/em-1/telemetry", {"ts": now_ms(), "metrics": {"residual_current_ma": 400.0}}
    )
    assert sms.wait_for(lambda r: len(to(MANAGER)(r)) == 1, 15)
    assert sms.wait_for(lambda r: len(to(PROPERTY)(r)) == 1, 20), "no escalation"
    assert scalar(world.dsn(), "SELECT escalation_tier FROM alerts") == 1
    assert scalar(world.dsn(), "SELECT count(*) FROM alert_events WHERE kind = 'escalated'") == 1


def test_ack_stops_escalation(
    engine: Engine, world: Endpoints, prefix: str, pub: Publisher, sms: FakeSmsGateway
) -> None:
    """Acknowledged before the delay, the alert is not escalated and its follow-ups are cancelled."""
    pub.publish(
        f"{prefix}/em-1/telemetry", {"ts": now_ms(), "metrics": {"residual_current_ma": 400.0}}
    )
    alert_id = wait_until(lambda: scalar(world.dsn(), "SELECT id FROM alerts"), 15, "alert")
    with psycopg.connect(world.dsn(), autocommit=True) as conn:
        a = actions.acknowledge(conn, alert_id, "operator Li", "on my way")
        assert a.state == "acknowledged"
        # The escalation clock is gone: nothing can be due for this alert any more.
        assert conn.execute("SELECT next_escalation_at FROM alerts").fetchone() == (None,)
        with pytest.raises(actions.ActionError, match="already acknowledged"):
            actions.acknowledge(conn, alert_id, "operator Wang")
    assert sms.wait_for(lambda r: len(to(MANAGER)(r)) == 1, 15)
    by, comment = scalar(
        world.dsn(), "SELECT actor || '|' || comment FROM alert_events WHERE kind = 'acknowledged'"
    ).split("|")
    assert by == "operator Li" and comment.startswith("on my way")
    assert to(PROPERTY)(sms.requests) == []


def test_storm_becomes_one_message_per_party(
    engine: Engine, world: Endpoints, prefix: str, pub: Publisher, sms: FakeSmsGateway
) -> None:
    """Six monitors of one unit over the limit at once: the manager gets one grouped message."""
    t = now_ms()
    for i in range(1, 7):
        pub.publish(
            f"{prefix}/em-{i}/telemetry",
            {"ts": t, "metrics": {"residual_current_ma": 300.0 + i * 10}},
        )
    wait_until(
        lambda: (
            scalar(
                world.dsn(),
                "SELECT count(*) FROM notifications WHERE state = 'sent' AND receiver = %s",
                (MANAGER,),
            )
            == 6
        ),
        20,
        "6 sent",
    )
    manager = to(MANAGER)(sms.requests)
    assert len(manager) == 1
    assert "6" in str(manager[0].body["text"]) and "Riverside Mall" in str(manager[0].body["text"])
    assert (
        scalar(
            world.dsn(),
            "SELECT count(DISTINCT delivered_with) FROM notifications WHERE receiver = %s",
            (MANAGER,),
        )
        == 1
    )


def test_silence_mutes_but_records(
    engine: Engine, world: Endpoints, prefix: str, pub: Publisher, sms: FakeSmsGateway
) -> None:
    """During maintenance of a unit its alerts are recorded as silenced and nobody is told."""
    with psycopg.connect(world.dsn(), autocommit=True) as conn:
        sid = actions.silence(
            conn,
            author="Li",
            reason="panel maintenance",
            unit_id="u1",
            ends_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
        )
    pub.publish(
        f"{prefix}/em-2/telemetry", {"ts": now_ms(), "metrics": {"residual_current_ma": 450.0}}
    )
    wait_until(lambda: scalar(world.dsn(), "SELECT silenced_by FROM alerts") == sid, 15, "silenced")
    assert scalar(world.dsn(), "SELECT count(*) FROM notifications") == 0
    assert scalar(world.dsn(), "SELECT comment FROM alert_events WHERE kind = 'silenced'") == (
        f"silence {sid}"
    )
    assert sms.requests == []


def test_rate_limit_holds_and_later_summarises(
    engine: Engine, world: Endpoints, prefix: str, pub: Publisher, sms: FakeSmsGateway
) -> None:
    """Past 3 SMS an hour the manager's next messages are held (not dropped) for one summary."""

    def queued() -> int:
        return int(
            scalar(
                world.dsn(), "SELECT count(*) FROM notifications WHERE receiver = %s", (MANAGER,)
            )
        )

    for i in range(1, 6):
        pub.publish(f"{prefix}/em-{i}/telemetry", {"ts": now_ms(), "metrics": {"battery_pct": 5.0}})
        expected_sent = min(i, 3)
        assert sms.wait_for(lambda r: len(to(MANAGER)(r)) >= expected_sent, 15)  # noqa: B023
        wait_until(lambda: queued() == i, 15, "queued")  # noqa: B023
    held = wait_until(
        lambda: (
            scalar(
                world.dsn(),
                "SELECT count(*) FROM notifications WHERE receiver = %s"
                " AND state = 'pending' AND next_attempt_at > now() + interval"
                " '50 minutes'",
                (MANAGER,),
            )
            == 2
        ),
        15,
        "two held messages",
    )
    assert held
    assert len(to(MANAGER)(sms.requests)) == 3


def test_fire_alarm_must_be_verified_to_close(
    engine: Engine, world: Endpoints, prefix: str, pub: Publisher
) -> None:
    """Closing a fire alarm needs confirmed fire or false alarm with a cause; counts are queryable."""
    pub.publish(f"{prefix}/utd-1/event", {"ts": now_ms(), "seq": 2, "kind": "fire_alarm"})
    alert_id = wait_until(lambda: scalar(world.dsn(), "SELECT id FROM alerts"), 15, "alert")
    with psycopg.connect(world.dsn(), autocommit=True) as conn:
        with pytest.raises(actions.ActionError, match="verify it as confirmed_fire or false_alarm"):
            actions.close(conn, alert_id, "Li")
        with pytest.raises(actions.ActionError, match="needs a cause"):
            actions.close(conn, alert_id, "Li", verification="false_alarm")
        a = actions.close(
            conn,
            alert_id,
            "Li",
            verification="false_alarm",
            cause="dust_steam",
            comment="kitchen steam",
        )
        assert a.state == "closed" and a.false_alarm_cause == "dust_steam"
        counts = conn.execute(
            "SELECT unit_id, device_id, cause, false_alarms FROM false_alarm_counts"
        ).fetchall()
    assert counts == [("u1", "utd-1", "dust_steam", 1)]


def test_sms_fails_over_to_the_second_provider(
    world: Endpoints, prefix: str, tmp_path: Path, sms: FakeSmsGateway, pub: Publisher
) -> None:
    """The first SMS provider answers 500: the message goes out through the second one."""
    first = FakeSmsGateway().start()
    first.fail_next(500)
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING.replace("        robots: [ops]\n", ""))
    settings = engine_settings(
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        notify={
            "routing_file": str(routing),
            "sms": {
                "primary": {"kind": "generic", "url": first.url},
                "backup": {"kind": "generic", "url": sms.url, "token": "gw-token"},
            },
        },
    )
    e = Engine(settings, world)
    e.start()
    try:
        assert e.consumer.wait_connected(10)
        pub.publish(
            f"{prefix}/em-3/telemetry", {"ts": now_ms(), "metrics": {"residual_current_ma": 400.0}}
        )
        assert sms.wait_for(lambda r: len(to(MANAGER)(r)) == 1, 20)
        assert first.attempts == 1 and first.requests == []
        assert scalar(world.dsn(), "SELECT attempts FROM notifications") == 1
    finally:
        e.stop()
        first.stop()


def test_channels_without_a_provider_are_not_queued(
    world: Endpoints, prefix: str, tmp_path: Path, pub: Publisher, receiver: Any
) -> None:
    """With no SMS provider configured, routing to sms queues nothing (instead of rows that
    can only give up), while webhooks still get the alert."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING.replace("        robots: [ops]\n", ""))
    settings = engine_settings(
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        notify={
            "routing_file": str(routing),
            "webhooks": {"t": {"url": receiver.url, "secret": "test-webhook-secret"}},
        },
    )
    e = Engine(settings, world)
    e.start()
    try:
        assert e.consumer.wait_connected(10)
        pub.publish(
            f"{prefix}/em-4/telemetry", {"ts": now_ms(), "metrics": {"residual_current_ma": 400.0}}
        )
        assert receiver.wait_for(lambda r: len(r) == 1, 15)
        assert scalar(world.dsn(), "SELECT count(*) FROM notifications WHERE channel = 'sms'") == 0
    finally:
        e.stop()


def test_a_resolved_message_states_the_value_back_within_the_limit(
    engine: Engine, prefix: str, pub: Publisher, sms: FakeSmsGateway
) -> None:
    """Residual current 500 mA, then 53 mA: the manager's second SMS says it is back to normal
    at 53 mA within the 300 mA limit, never 'above the limit' (it used to repeat the breach)."""
    topic = f"{prefix}/em-1/telemetry"
    pub.publish(topic, {"ts": now_ms(), "metrics": {"residual_current_ma": 500.0}})
    assert sms.wait_for(lambda r: len(to(MANAGER)(r)) == 1, 20)
    pub.publish(topic, {"ts": now_ms() + 1, "metrics": {"residual_current_ma": 53.0}})
    assert sms.wait_for(lambda r: len(to(MANAGER)(r)) == 2, 20)
    fired, resolved = (str(r.body["text"]) for r in to(MANAGER)(sms.requests))
    assert "超过限值 300 mA" in fired and "500" in fired
    assert "已恢复正常" in resolved and "53 mA" in resolved and "300 mA" in resolved
    assert "超过" not in resolved
