"""Broker auth on a private Mosquitto of this module: passwords from the registry, per-device ACL."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.catalog import DeviceType
from devices.credentials import mosquitto_hash, new_password
from firesentry.app import Engine, embedded_services
from firesentry.broker import (
    PASSWORD_FILE,
    ensure_events_account,
    gateway_account,
    known_workers,
    sync,
)
from firesentry.config import EmbeddedConfig, Settings
from firesentry.embedded import EmbeddedServices, Endpoints
from store import registry as reg
from store.migrate import migrate
from tests.helpers import engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e
PREFIX = "fs/v1"
NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86


@dataclass
class AuthBroker:
    """The module's services with auth turned on, and the devices' passwords."""

    settings: Settings
    svc: EmbeddedServices
    ep: Endpoints
    passwords: dict[str, str]
    first_sync: str


def add_device(ep: Endpoints, dev_id: str, passwords: dict[str, str]) -> None:
    passwords[dev_id] = new_password()
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        reg.create_device(
            conn,
            dev_id,
            "u1",
            DeviceType.ELECTRICAL,
            password_hash=mosquitto_hash(passwords[dev_id]),
        )


@pytest.fixture(scope="module")
def broker() -> Iterator[AuthBroker]:
    """A second EmbeddedServices in a temporary folder, two devices, then `broker sync`."""
    root = Path(tempfile.mkdtemp(prefix="firesentry-auth-"))
    settings = Settings(embedded=EmbeddedConfig(dir=root / ".firesentry"))
    svc = embedded_services(settings, durable=False)
    try:
        ep = svc.up()
        migrate(ep.dsn())
        with psycopg.connect(ep.dsn(), autocommit=True) as conn:
            reg.add_unit(conn, "u1", "Auth Plaza")
        passwords: dict[str, str] = {}
        for dev_id in ("dev-a", "dev-b"):
            add_device(ep, dev_id, passwords)
        res = sync(settings)
        authed = svc.endpoints()
        assert authed is not None
        yield AuthBroker(settings, svc, authed, passwords, res.action)
    finally:
        svc.destroy()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Client:
    """A paho MQTT 5 client that records its CONNACK, PUBACK reason codes and messages."""

    mqttc: mqtt.Client
    connack: list[ReasonCode] = field(default_factory=list)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    disconnects: list[ReasonCode] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.mqttc.publish(topic, payload, qos=1)
        return info.mid

    def received(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.mqttc.disconnect()
        self.mqttc.loop_stop()


def connect(
    ep: Endpoints,
    username: str | None,
    password: str | None,
    client_id: str | None = None,
    session_expiry_s: int = 0,
) -> Client:
    """Connect, and wait for the broker's CONNACK (accepted or not); with session_expiry_s,
    resume or start a persistent session that the broker keeps that long after a disconnect."""
    mqttc = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    c = Client(mqttc)
    if username is not None:
        mqttc.username_pw_set(username, password)

    def on_connect(cl: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        c.connack.append(rc)

    def on_publish(cl: mqtt.Client, ud: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        c.pubacks[mid] = rc

    def on_message(cl: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
        with c.lock:
            c.messages.append((msg.topic, bytes(msg.payload)))

    def on_disconnect(cl: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        c.disconnects.append(rc)

    mqttc.on_connect = on_connect
    mqttc.on_disconnect = on_disconnect
    mqttc.on_publish = on_publish
    mqttc.on_message = on_message
    # A refused CONNACK would otherwise make paho retry in the background.
    mqttc.reconnect_delay_set(60, 120)
    props = None
    if session_expiry_s:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
    mqttc.connect(ep.mqtt_host, ep.mqtt_port, clean_start=not session_expiry_s, properties=props)
    mqttc.loop_start()
    wait_until(lambda: c.connack, 10, f"CONNACK for {username}")
    return c


@pytest.fixture()
def ingest_sub(broker: AuthBroker) -> Iterator[Client]:
    """A subscriber on everything under the prefix, logged in with ingest's account."""
    ep = broker.ep
    c = connect(ep, ep.mqtt_username, ep.mqtt_password)
    assert not c.connack[0].is_failure, str(c.connack[0])
    granted: list[list[ReasonCode]] = []
    c.mqttc.on_subscribe = lambda cl, ud, mid, rcs, props: granted.append(rcs)
    c.mqttc.subscribe(f"{PREFIX}/#", qos=1)
    wait_until(lambda: granted, 10, "SUBACK")
    assert not granted[0][0].is_failure
    yield c
    c.close()


def test_first_sync_restarts_the_broker_and_refuses_anonymous(broker: AuthBroker) -> None:
    """The first sync restarts Mosquitto with auth on; the endpoints then carry ingest's account."""
    assert broker.first_sync == "restarted"
    assert broker.ep.mqtt_username == "ingest" and broker.ep.mqtt_password
    anon = connect(broker.ep, None, None)
    assert anon.connack[0].value == NOT_AUTHORIZED
    anon.close()


def test_device_publishes_on_its_own_topic(broker: AuthBroker, ingest_sub: Client) -> None:
    """Device A's message on fs/v1/dev-a/... reaches a subscriber logged in as ingest."""
    a = connect(broker.ep, "dev-a", broker.passwords["dev-a"])
    assert not a.connack[0].is_failure
    topic = f"{PREFIX}/dev-a/telemetry"
    mid = a.publish(topic, b'{"own": 1}')
    wait_until(lambda: ingest_sub.received(topic), 10, "device A's message at ingest")
    wait_until(lambda: mid in a.pubacks, 10, "PUBACK")
    assert a.pubacks[mid].value == 0
    a.close()


def test_device_cannot_publish_on_another_devices_topic(
    broker: AuthBroker, ingest_sub: Client
) -> None:
    """Device A publishing on B's topic gets PUBACK 0x87 and nothing is delivered."""
    a = connect(broker.ep, "dev-a", broker.passwords["dev-a"])
    foreign = f"{PREFIX}/dev-b/telemetry"
    mid = a.publish(foreign, b'{"spoofed": 1}')
    wait_until(lambda: mid in a.pubacks, 10, "PUBACK of the foreign publish")
    assert a.pubacks[mid].value == NOT_AUTHORIZED, str(a.pubacks[mid])
    # Messages from one client arrive in order, so once this one is in the other never comes.
    sentinel = f"{PREFIX}/dev-a/event"
    a.publish(sentinel, b'{"sentinel": 1}')
    wait_until(lambda: ingest_sub.received(sentinel), 10, "the sentinel")
    assert ingest_sub.received(foreign) == []
    a.close()


def test_wrong_password_is_refused_at_connect(broker: AuthBroker) -> None:
    """A wrong password (or an unknown user) gets a failing CONNACK."""
    for user, password in (("dev-a", "wrong"), ("dev-a", broker.passwords["dev-b"]), ("x", "y")):
        c = connect(broker.ep, user, password)
        assert c.connack[0].value in (NOT_AUTHORIZED, BAD_CREDENTIALS), str(c.connack[0])
        c.close()


def test_device_added_later_connects_after_the_next_sync(broker: AuthBroker) -> None:
    """A new device is refused until the next sync, which restarts the broker."""
    add_device(broker.ep, "dev-c", broker.passwords)
    c = connect(broker.ep, "dev-c", broker.passwords["dev-c"])
    assert c.connack[0].is_failure
    c.close()
    assert sync(broker.settings).action == "restarted"

    def accepted() -> bool:
        c = connect(broker.ep, "dev-c", broker.passwords["dev-c"])
        c.close()
        return not c.connack[0].is_failure

    wait_until(accepted, 10, "dev-c accepted after the sync", interval=0.2)


def test_engine_logs_in_with_the_ingest_account(broker: AuthBroker) -> None:
    """The engine connects with the endpoints' account and stores a device's reading."""
    settings = engine_settings(PREFIX, f"ingest-{uuid.uuid4().hex[:8]}")
    assert settings.mqtt.username is None
    engine = Engine(settings, broker.ep)
    engine.start()
    try:
        assert engine.consumer.wait_connected(10), "engine did not log in to the broker"
        a = connect(broker.ep, "dev-a", broker.passwords["dev-a"])
        body = b'{"ts": %d, "seq": 1, "metrics": {"residual_current_ma": 42.0}}'
        a.publish(f"{PREFIX}/dev-a/telemetry", body % int(time.time() * 1000))
        dsn = broker.ep.dsn()
        query = "SELECT count(*) FROM telemetry t JOIN devices d ON d.num = t.device_num"
        wait_until(lambda: scalar(dsn, query + " WHERE d.id = 'dev-a'") == 1, 15, "stored")
        a.close()
    finally:
        engine.stop()


def test_a_broker_synced_before_the_events_session_gets_its_account_at_run(
    broker: AuthBroker,
) -> None:
    """A private broker whose files predate the events session (no ingest-events account):
    `run` adds it before the engine starts, instead of leaving fire alarms refused; then the
    events session logs in and a fire alarm is stored."""
    passwd = broker.svc.mosquitto.root / PASSWORD_FILE
    lines = passwd.read_text().splitlines()
    assert any(ln.startswith("ingest-events:") for ln in lines), "sync writes the account"
    passwd.write_text("".join(f"{ln}\n" for ln in lines if not ln.startswith("ingest-events:")))
    broker.svc.apply_auth()
    res = ensure_events_account(broker.settings)
    assert res is not None and res.action == "restarted"
    assert ensure_events_account(broker.settings) is None, "only when missing"
    engine = Engine(engine_settings(PREFIX, f"ingest-{uuid.uuid4().hex[:8]}"), broker.ep)
    engine.start()
    try:
        assert engine.consumer.wait_connected(10), "both sessions logged in"
        assert engine.consumer.events.connected()
    finally:
        engine.stop()


def test_a_device_using_ingests_client_id_does_not_take_over_its_session(
    broker: AuthBroker,
) -> None:
    """dev-a connecting with ingest's client id (configured or its username) neither kicks the
    engine off nor stops other devices' messages from being stored."""
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    engine = Engine(engine_settings(PREFIX, client_id), broker.ep)
    engine.start()
    attackers: list[Client] = []
    try:
        assert engine.consumer.wait_connected(10)
        generation = engine.consumer.telemetry.generation
        for stolen in (client_id, broker.ep.mqtt_username or "ingest"):
            attackers.append(connect(broker.ep, "dev-a", broker.passwords["dev-a"], stolen))
        b = connect(broker.ep, "dev-b", broker.passwords["dev-b"])
        t0 = int(time.time() * 1000)
        for i in range(10):
            b.publish(
                f"{PREFIX}/dev-b/telemetry", b'{"ts": %d, "metrics": {"temp_c_1": 30}}' % (t0 + i)
            )
        dsn = broker.ep.dsn()
        query = "SELECT count(*) FROM telemetry t JOIN devices d ON d.num = t.device_num"
        wait_until(lambda: scalar(dsn, query + " WHERE d.id = 'dev-b'") == 10, 15, "dev-b stored")
        b.close()
        assert engine.consumer.broker_connected
        assert engine.consumer.telemetry.generation == generation, "ingest's session was taken over"
    finally:
        for c in attackers:
            c.close()
        engine.stop()


def test_a_device_cannot_knock_another_device_off(broker: AuthBroker) -> None:
    """dev-a connecting with dev-b's client id leaves dev-b's connection up."""
    b = connect(broker.ep, "dev-b", broker.passwords["dev-b"], "dev-b")
    a = connect(broker.ep, "dev-a", broker.passwords["dev-a"], "dev-b")
    try:
        assert not a.connack[0].is_failure and not b.connack[0].is_failure
        # dev-b proves it is still connected: its own publish is PUBACKed on this session.
        mid = b.publish(f"{PREFIX}/dev-b/event", b'{"still": "here"}')
        wait_until(lambda: mid in b.pubacks or b.disconnects, 10, "dev-b's PUBACK")
        assert b.disconnects == [], f"dev-b was disconnected: {b.disconnects}"
    finally:
        a.close()
        b.close()


def test_each_ingest_worker_has_its_own_account_and_session(broker: AuthBroker) -> None:
    """`broker sync --worker ingest-b` adds an account; two workers (ingest, ingest-b) stay
    connected side by side, each receiving what it subscribes to."""
    from firesentry.broker import worker_secret_file

    sync(broker.settings, workers=["ingest-b"])
    password = worker_secret_file(broker.svc.mosquitto.root, "ingest-b").read_text().strip()
    ep = broker.ep
    first = connect(ep, ep.mqtt_username, ep.mqtt_password)
    second = connect(ep, "ingest-b", password)
    try:
        assert not first.connack[0].is_failure and not second.connack[0].is_failure
        granted: list[list[ReasonCode]] = []
        second.mqttc.on_subscribe = lambda cl, ud, mid, rcs, props: granted.append(rcs)
        second.mqttc.subscribe(f"{PREFIX}/#", qos=1)
        wait_until(lambda: granted, 10, "SUBACK for ingest-b")
        assert not granted[0][0].is_failure
        a = connect(ep, "dev-a", broker.passwords["dev-a"])
        topic = f"{PREFIX}/dev-a/status"
        a.publish(topic, b"online")
        wait_until(lambda: second.received(topic), 10, "ingest-b received dev-a's message")
        a.close()
        assert first.disconnects == [] and second.disconnects == []
    finally:
        first.close()
        second.close()


def test_a_sync_leaves_an_offline_expiring_session_alone(broker: AuthBroker) -> None:
    """A device with an MQTT 5 session that expires is offline when `broker sync` gives it a
    new password. Mosquitto 2.0.11 (Debian 12's) reloading on SIGHUP disconnects that offline
    session a second time and so puts it on its session-expiry list twice; at the expiry it
    frees the session but keeps one entry, which then points at whatever is given that memory
    next: a connected client expired, then a segfault that cuts every device and fire alarm
    off (seen in CI, core dump in `session_expiry__check`). The sync must not touch the offline
    session, and the device logs in with its new password afterwards."""
    ep = broker.ep
    log = broker.svc.mosquitto.log
    add_device(ep, "dev-x", broker.passwords)
    sync(broker.settings)
    x = connect(ep, "dev-x", broker.passwords["dev-x"], session_expiry_s=600)
    assert not x.connack[0].is_failure
    x.close()
    left = "Client dev-x disconnected."
    wait_until(lambda: log.read_text(errors="replace").count(left), 10, "dev-x's disconnect")
    before = log.read_text(errors="replace").count(left)
    new = new_password()
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        assert reg.set_password_hash(conn, "dev-x", mosquitto_hash(new))
    sync(broker.settings)
    broker.passwords["dev-x"] = new
    again = connect(ep, "dev-x", new, session_expiry_s=600)
    try:
        assert not again.connack[0].is_failure, str(again.connack[0])
        assert log.read_text(errors="replace").count(left) == before, (
            "the sync disconnected dev-x's offline session again (Mosquitto 2.0.11 then "
            "corrupts its session-expiry list)"
        )
        mid = again.publish(f"{PREFIX}/dev-x/status", b"online")
        wait_until(lambda: mid in again.pubacks, 10, "dev-x's PUBACK")
    finally:
        again.close()


def reached(items: list[ReasonCode], count: int) -> bool:
    """Whether items has at least count entries."""
    return len(items) >= count


def test_fire_alarms_published_while_syncs_restart_the_broker_are_stored_once(
    broker: AuthBroker,
) -> None:
    """A panel keeps sending fire alarms while an installer runs `broker sync` twice (each a
    broker restart): every alarm the broker acknowledged is stored, and none twice."""
    ep = broker.ep
    passwords = broker.passwords
    passwords["utd-s"] = new_password()
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        reg.create_device(
            conn, "utd-s", "u1", DeviceType.UTD, password_hash=mosquitto_hash(passwords["utd-s"])
        )
    sync(broker.settings)
    engine = Engine(engine_settings(PREFIX, f"ingest-{uuid.uuid4().hex[:8]}"), broker.ep)
    engine.start()
    panel = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="utd-s", protocol=mqtt.MQTTv5)
    panel.username_pw_set("utd-s", passwords["utd-s"])
    panel.reconnect_delay_set(1, 1)
    acked: set[int] = set()
    panel.on_publish = lambda cl, ud, mid, rc, props: acked.add(mid)
    drops: list[ReasonCode] = []
    panel.on_disconnect = lambda cl, ud, flags, rc, props: drops.append(rc)
    connects: list[ReasonCode] = []
    panel.on_connect = lambda cl, ud, flags, rc, props: connects.append(rc)
    n = 60
    try:
        assert engine.consumer.wait_connected(10)
        panel.connect(ep.mqtt_host, ep.mqtt_port)
        panel.loop_start()
        t0 = int(time.time() * 1000)
        mids: list[int] = []
        syncs = 0
        for i in range(n):
            body = b'{"ts": %d, "seq": %d, "kind": "fire_alarm"}' % (t0 + i, i)
            mids.append(panel.publish(f"{PREFIX}/utd-s/event", body, qos=1).mid)
            if i in (20, 40):
                # The second restart, too, must find the panel connected.
                wait_until(partial(reached, connects, syncs + 1), 10, "the panel (re)connected")
                assert sync(broker.settings).action == "restarted"
                syncs += 1
            time.sleep(0.01)  # a panel's pace, so that some alarms meet the broker down
        assert syncs == 2
        wait_until(lambda: len(drops) >= 2, 10, "the panel cut off by both restarts")
        wait_until(lambda: acked.issuperset(mids), 30, "the broker's PUBACK of every alarm")
        dsn = ep.dsn()
        query = (
            "SELECT count(*), count(DISTINCT e.seq) FROM events e"
            " JOIN devices d ON d.num = e.device_num WHERE d.id = 'utd-s'"
        )

        def stored() -> tuple[int, int]:
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute(query).fetchone()
                assert row is not None
                return int(row[0]), int(row[1])

        wait_until(lambda: stored()[1] == n, 30, "every alarm stored")
        assert stored() == (n, n)
    finally:
        panel.disconnect()
        panel.loop_stop()
        engine.stop()


def test_a_plain_sync_keeps_the_workers_accounts_until_one_is_dropped(
    broker: AuthBroker,
) -> None:
    """`broker sync` run after adding devices (no --worker) keeps ingest-c's account: a worker
    locked out would leave the share of messages the broker routes to its session unread.
    `--drop-worker ingest-c` removes it; dropping an unknown worker is refused by name."""
    from firesentry.broker import BrokerSyncError, worker_secret_file

    assert "ingest-c" in sync(broker.settings, workers=["ingest-c"]).workers
    secret = worker_secret_file(broker.svc.mosquitto.root, "ingest-c")
    password = secret.read_text().strip()
    assert "ingest-c" in sync(broker.settings).workers
    for user in ("ingest-c", "ingest-c-events"):
        c = connect(broker.ep, user, password)
        assert not c.connack[0].is_failure, f"{user}: {c.connack[0]}"
        c.close()
    with pytest.raises(BrokerSyncError, match="no ingest worker account 'ingest-z'"):
        sync(broker.settings, drop_workers=["ingest-z"])
    assert "ingest-c" not in sync(broker.settings, drop_workers=["ingest-c"]).workers
    assert not secret.exists()
    c = connect(broker.ep, "ingest-c", password)
    assert c.connack[0].value in (NOT_AUTHORIZED, BAD_CREDENTIALS), str(c.connack[0])
    c.close()


def test_the_gateway_account_writes_events_and_heartbeats_of_any_device_and_reads_nothing(
    broker: AuthBroker, ingest_sub: Client
) -> None:
    """broker sync gives the GB/T 26875.3 gateway an account: it may publish a UTD's events
    and heartbeats (any device's: ingest still takes only registered UTDs'), not its status
    (a device's retained will), and reads nothing; it is not an ingest worker."""
    user, password = gateway_account(broker.svc.mosquitto.root)
    assert user == "gateway" and "gateway" not in known_workers(broker.svc.mosquitto.root)
    gw = connect(broker.ep, user, password)
    assert not gw.connack[0].is_failure, str(gw.connack[0])
    for kind in ("event", "telemetry"):
        topic = f"{PREFIX}/dev-b/{kind}"
        mid = gw.publish(topic, b'{"from": "gateway"}')
        # The subscriber may have it before the publisher has its PUBACK: wait for both.
        wait_until(
            lambda t=topic, m=mid: ingest_sub.received(t) and m in gw.pubacks,  # type: ignore[misc]
            10,
            f"the gateway's {kind} and its PUBACK",
        )
        assert gw.pubacks[mid].value == 0
    mid = gw.publish(f"{PREFIX}/dev-b/status", b'{"status": "offline"}')
    wait_until(lambda: mid in gw.pubacks, 10, "PUBACK of the status publish")
    assert gw.pubacks[mid].value == NOT_AUTHORIZED
    # Mosquitto grants the subscription but delivers nothing the ACL does not let it read:
    # not even its own publish, which would reach it before the PUBACK (one queue, in order).
    granted: list[list[ReasonCode]] = []
    gw.mqttc.on_subscribe = lambda cl, ud, m, rcs, props: granted.append(rcs)
    gw.mqttc.subscribe(f"{PREFIX}/#", qos=1)
    wait_until(lambda: granted, 10, "SUBACK")
    topic = f"{PREFIX}/dev-a/event"
    mid = gw.publish(topic, b'{"echo": 1}')
    wait_until(lambda: mid in gw.pubacks and ingest_sub.received(topic), 10, "the echo")
    assert gw.received(topic) == [] and gw.received(f"{PREFIX}/dev-b/event") == []
    gw.close()
