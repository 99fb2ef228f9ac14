"""TLS: the private broker's MQTT-over-TLS listener, ingest over TLS, and PostgreSQL sslmode."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from devices.catalog import DeviceType
from devices.credentials import mosquitto_hash, new_password
from firesentry.app import Engine, embedded_services, resolve_endpoints
from firesentry.broker import sync
from firesentry.config import EmbeddedConfig, Settings
from firesentry.embedded import (
    LOOPBACK,
    BrokerTls,
    EmbeddedServices,
    Endpoints,
    _chown_tree,
    _Mosquitto,
    free_port,
)
from firesentry.tls import make_ca, make_server_cert
from store import registry as reg
from store.migrate import migrate
from tests.e2e.test_broker_auth import Client
from tests.helpers import engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e
PREFIX = "fs/v1"
DEVICE = "dev-t"
STORED = (
    "SELECT count(*) FROM telemetry t JOIN devices d ON d.num = t.device_num "
    "WHERE d.id = %s AND t.value = %s"
)


@dataclass
class TlsBroker:
    """The module's services (TLS listener on, auth on), the device's password and the CA."""

    settings: Settings
    svc: EmbeddedServices
    ep: Endpoints
    password: str
    ca: Path


@pytest.fixture(scope="module")
def broker() -> Iterator[TlsBroker]:
    """Private services of this module as `firesentry up` makes them, one device, `broker sync`."""
    root = Path(tempfile.mkdtemp(prefix="firesentry-tls-"))
    settings = Settings(embedded=EmbeddedConfig(dir=root / ".firesentry"))
    svc = embedded_services(settings, durable=False)
    try:
        ep = svc.up()
        migrate(ep.dsn())
        password = new_password()
        with psycopg.connect(ep.dsn(), autocommit=True) as conn:
            reg.add_unit(conn, "u1", "TLS Tower")
            reg.create_device(
                conn, DEVICE, "u1", DeviceType.ELECTRICAL, password_hash=mosquitto_hash(password)
            )
        sync(settings)
        authed = svc.endpoints()
        assert authed is not None
        ca = svc.mosquitto.tls_ca()
        assert ca is not None
        yield TlsBroker(settings, svc, authed, password, ca)
    finally:
        svc.destroy()
        shutil.rmtree(root, ignore_errors=True)


def client(
    port: int,
    username: str | None,
    password: str | None,
    ca: Path | None = None,
    client_id: str | None = None,
) -> Client:
    """Connect (over TLS, CA pinned, when ca is given) and wait for the CONNACK."""
    mqttc = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    c = Client(mqttc)
    if ca is not None:
        mqttc.tls_set(ca_certs=str(ca))
    if username is not None:
        mqttc.username_pw_set(username, password)
    mqttc.on_connect = lambda cl, ud, flags, rc, props: c.connack.append(rc)
    mqttc.on_disconnect = lambda cl, ud, flags, rc, props: c.disconnects.append(rc)

    def on_message(cl: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
        with c.lock:
            c.messages.append((msg.topic, bytes(msg.payload)))

    mqttc.on_message = on_message
    mqttc.reconnect_delay_set(60, 120)  # a refused or dropped client stays down
    mqttc.connect(LOOPBACK, port)
    mqttc.loop_start()
    wait_until(lambda: c.connack, 10, f"CONNACK for {username}")
    return c


def reading(value: float) -> bytes:
    """A telemetry payload with one residual-current value, stamped now."""
    body = {"ts": int(time.time() * 1000), "seq": 1, "metrics": {"residual_current_ma": value}}
    return json.dumps(body).encode()


@pytest.fixture()
def engine(broker: TlsBroker) -> Iterator[Engine]:
    """An engine on the plain loopback listener with ingest's account, subscribed."""
    e = Engine(engine_settings(PREFIX, f"ingest-{uuid.uuid4().hex[:8]}"), broker.ep)
    e.start()
    assert e.consumer.wait_connected(10), "engine did not log in to the broker"
    yield e
    e.stop()


def test_endpoints_and_status_carry_the_tls_port(broker: TlsBroker) -> None:
    """state.json, the endpoints and `firesentry status` give the TLS port and the CA to pin."""
    port = broker.ep.mqtt_tls_port
    assert port and port != broker.ep.mqtt_port
    state = json.loads(broker.svc.state_file.read_text())
    assert state["mqtt_tls_port"] == port
    assert f"TLS on 127.0.0.1:{port}, devices pin {broker.ca}" in broker.svc.status()["mosquitto"]
    assert broker.ca == broker.settings.embedded.dir.resolve() / "tls" / "ca.crt"


def test_device_over_tls_with_its_password_is_stored(broker: TlsBroker, engine: Engine) -> None:
    """A paho device pinning the CA publishes over TLS with its password; the engine stores it."""
    dev = client(broker.ep.mqtt_tls_port, DEVICE, broker.password, ca=broker.ca)
    assert not dev.connack[0].is_failure, str(dev.connack[0])
    dev.mqttc.publish(f"{PREFIX}/{DEVICE}/telemetry", reading(41.5), qos=1).wait_for_publish(10)
    dev.close()
    dsn = broker.ep.dsn()
    wait_until(lambda: scalar(dsn, STORED, (DEVICE, 41.5)) == 1, 15, "the reading stored")


@pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None, reason="mosquitto_pub (Debian mosquitto-clients) absent"
)
def test_readme_mosquitto_pub_command_over_tls(broker: TlsBroker, engine: Engine) -> None:
    """The README's mosquitto_pub command (CA pinned, QoS 1) delivers a reading that is stored."""
    res = subprocess.run(
        [
            *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.ep.mqtt_tls_port)),
            *("--cafile", str(broker.ca), "-u", DEVICE, "-P", broker.password),
            *("-t", f"fs/v1/{DEVICE}/telemetry", "-q", "1", "-m", reading(52.5).decode()),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    dsn = broker.ep.dsn()
    wait_until(lambda: scalar(dsn, STORED, (DEVICE, 52.5)) == 1, 15, "the reading stored")


def test_tls_listener_needs_the_same_password(broker: TlsBroker) -> None:
    """Over TLS a wrong password and an anonymous client are refused, as on the plain listener."""
    for user, password in ((DEVICE, "wrong"), (None, None)):
        c = client(broker.ep.mqtt_tls_port, user, password, ca=broker.ca)
        assert c.connack[0].is_failure, f"{user} accepted over TLS"
        c.close()


def test_tls_listener_binds_client_id_to_the_account(broker: TlsBroker) -> None:
    """A device connecting over TLS with ingest's client id does not knock ingest off."""
    ep = broker.ep
    sub = client(ep.mqtt_port, ep.mqtt_username, ep.mqtt_password, client_id="ingest")
    assert not sub.connack[0].is_failure
    granted: list[list[ReasonCode]] = []
    sub.mqttc.on_subscribe = lambda cl, ud, mid, rcs, props: granted.append(rcs)
    sub.mqttc.subscribe(f"{PREFIX}/#", qos=1)
    wait_until(lambda: granted, 10, "SUBACK")
    dev = client(ep.mqtt_tls_port, DEVICE, broker.password, ca=broker.ca, client_id="ingest")
    assert not dev.connack[0].is_failure
    sentinel = f"{PREFIX}/{DEVICE}/event"
    dev.mqttc.publish(sentinel, b'{"sentinel": 1}', qos=1)
    # A clean-start subscriber that had been kicked off would never see this.
    wait_until(lambda: sub.received(sentinel), 10, "the sentinel at the subscriber")
    assert sub.disconnects == []
    dev.close()
    sub.close()


def handshake(ctx: ssl.SSLContext, port: int) -> None:
    """Complete a TLS handshake with 127.0.0.1:port (or raise), then close the connection."""
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=LOOPBACK),
    ):
        pass


def test_client_without_the_ca_fails_the_handshake(broker: TlsBroker) -> None:
    """A client trusting only the system's CAs cannot complete the TLS handshake; with the CA it can."""
    # paho leaves the socket of a failed handshake open, so the handshake is done here.
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(ssl.create_default_context(), broker.ep.mqtt_tls_port)
    handshake(ssl.create_default_context(cafile=str(broker.ca)), broker.ep.mqtt_tls_port)


def test_oversized_retained_message_over_tls_is_refused(broker: TlsBroker) -> None:
    """A retained message above max_packet_size over TLS disconnects its sender; the old one stays."""
    status = f"{PREFIX}/{DEVICE}/status"
    dev = client(broker.ep.mqtt_tls_port, DEVICE, broker.password, ca=broker.ca)
    dev.mqttc.publish(status, b"online", qos=1, retain=True).wait_for_publish(10)
    dev.mqttc.publish(status, b"x" * (2 * 1024 * 1024), qos=1, retain=True)
    wait_until(lambda: dev.disconnects, 10, "the broker dropping the sender")
    dev.mqttc.loop_stop()
    ep = broker.ep
    sub = client(ep.mqtt_port, ep.mqtt_username, ep.mqtt_password)
    sub.mqttc.subscribe(status, qos=1)
    assert wait_until(lambda: sub.received(status), 10, "the retained status") == [b"online"]
    sub.close()


def test_ingest_speaks_tls_with_mqtt_tls(broker: TlsBroker) -> None:
    """With mqtt.tls (CA file, hostname check on) ingest subscribes over TLS and stores a reading."""
    settings = engine_settings(
        PREFIX,
        f"ingest-{uuid.uuid4().hex[:8]}",
        mqtt={"tls": {"enabled": True, "ca_file": str(broker.ca)}},
    )
    assert settings.mqtt.tls.check_hostname is True
    ep = dataclasses.replace(broker.ep, mqtt_port=broker.ep.mqtt_tls_port)
    e = Engine(settings, ep)
    e.start()
    try:
        assert e.consumer.wait_connected(10), "ingest did not connect over TLS"
        dev = client(broker.ep.mqtt_port, DEVICE, broker.password)
        dev.mqttc.publish(f"{PREFIX}/{DEVICE}/telemetry", reading(63.5), qos=1)
        wait_until(lambda: scalar(ep.dsn(), STORED, (DEVICE, 63.5)) == 1, 15, "stored")
        dev.close()
    finally:
        e.stop()


@pytest.fixture(scope="module")
def own_cert_broker() -> Iterator[tuple[_Mosquitto, Path]]:
    """A private broker with your own certificate, issued for broker.example only, and its CA."""
    root = Path(tempfile.mkdtemp(prefix="firesentry-owncert-"))
    root.chmod(0o755)
    ca = make_ca(root / "pki", "test CA")
    cert = make_server_cert(root / "pki", ca, ["broker.example"])
    mosq = _Mosquitto(
        root / "mqtt",
        "mosquitto",
        tls=BrokerTls(cert_file=cert.cert, key_file=cert.key, ca_file=ca.cert),
    )
    try:
        mosq.start(free_port())
        yield mosq, ca.cert
    finally:
        mosq.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_ingest_checks_the_host_name_by_default(own_cert_broker: tuple[_Mosquitto, Path]) -> None:
    """A certificate from the pinned CA but for another name is refused unless check_hostname: false."""
    mosq, ca = own_cert_broker
    assert mosq.tls_ca() == ca.resolve()
    ep = Endpoints(LOOPBACK, mosq.tls_port(), LOOPBACK, 1, "x", "x", "")

    def ingest_tls(**tls: Any) -> ssl.SSLContext:
        """The TLS context ingest's paho client connects with, for these mqtt.tls settings."""
        mqtt_section = {"tls": {"enabled": True, "ca_file": str(ca), **tls}}
        e = Engine(engine_settings(PREFIX, f"ingest-{uuid.uuid4().hex[:8]}", mqtt=mqtt_section), ep)
        assert e.consumer.tls_context is not None
        return e.consumer.tls_context

    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        handshake(ingest_tls(), mosq.tls_port())
    handshake(ingest_tls(check_hostname=False), mosq.tls_port())  # the own CA's certificate


def _enable_ssl(svc: EmbeddedServices, ep: Endpoints) -> None:
    """Turn ssl on in the module's cluster with the generated server certificate (test only)."""
    pg = svc.postgres
    for name in ("server.crt", "server.key"):
        dst = pg.data / f"fs-{name}"
        shutil.copyfile(svc.root / "tls" / name, dst)
        dst.chmod(0o600)
    if pg.run_as:
        _chown_tree(pg.data, pg.run_as)
    with psycopg.connect(ep.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET ssl_cert_file = '{pg.data / 'fs-server.crt'}'")
        conn.execute(f"ALTER SYSTEM SET ssl_key_file = '{pg.data / 'fs-server.key'}'")
        conn.execute("ALTER SYSTEM SET ssl = on")
        conn.execute("SELECT pg_reload_conf()")

    def encrypted() -> bool:
        try:
            with psycopg.connect(ep.dsn() + " sslmode=require", connect_timeout=5):
                return True
        except psycopg.OperationalError:
            return False

    wait_until(encrypted, 15, "PostgreSQL to accept TLS after the reload", interval=0.1)


def _settings_for(ep: Endpoints, **database: Any) -> Settings:
    """Settings for an external database at ep's address, with ep's account."""
    db = {"host": ep.db_host, "port": ep.db_port, "dbname": ep.db_name, "user": ep.db_user}
    sections: dict[str, Any] = {
        "embedded": {"enabled": False},
        "database": {**db, "password": ep.db_password, **database},
    }
    return Settings(**sections)


def test_verify_full_against_a_server_without_tls_fails_clearly(
    services: Endpoints, broker: TlsBroker
) -> None:
    """database.sslmode verify-full goes into the DSN and refuses a server that has no TLS."""
    settings = _settings_for(services, sslmode="verify-full", sslrootcert=str(broker.ca))
    ep = resolve_endpoints(settings)
    assert "sslmode=verify-full" in ep.dsn() and f"sslrootcert={broker.ca}" in ep.dsn("postgres")
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL"):
        psycopg.connect(ep.dsn(), connect_timeout=5).close()


def test_verify_full_against_the_private_cluster_with_its_certificate(broker: TlsBroker) -> None:
    """With ssl on and the generated certificate, verify-full connects and the session is encrypted."""
    _enable_ssl(broker.svc, broker.ep)
    settings = _settings_for(broker.ep, sslmode="verify-full", sslrootcert=str(broker.ca))
    ep = resolve_endpoints(settings)
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    assert scalar(ep.dsn(), query) is True
