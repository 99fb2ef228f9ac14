"""`firesentry demo`: private services, a seeded fleet, the engine, a simulator and a receiver."""

from __future__ import annotations

import secrets
import signal
import sys
import threading
import time
from typing import Any

import psycopg
import structlog
from pydantic import SecretStr

from devices.catalog import DeviceType
from devices.credentials import mosquitto_hash, new_password
from firesentry.app import EX_SOFTWARE, Engine, WorkerDeath, resolve_endpoints
from firesentry.broker import sync
from firesentry.config import Settings
from firesentry.config import WebhookReceiver as WebhookConfig
from firesentry.embedded import Endpoints
from firesentry.serve import api_probe, start_demo_console
from simulators.demo_fleet import DemoFleet, SimDevice
from simulators.services.webhook import Received, WebhookReceiver
from store import registry as reg
from store.demo_seed import unit_has_contacts
from store.migrate import migrate

log = structlog.get_logger("demo")

UNITS = [
    ("demo-u1", "Riverside Mall", "Jinjiang", 30.657, 104.081, "high_rise"),
    ("demo-u2", "No. 3 Primary School", "Jinjiang", 30.642, 104.095, "school"),
    ("demo-u3", "Hongxing Textile Plant", "Chenghua", 30.690, 104.120, "factory"),
]


def seed(conn: psycopg.Connection[Any]) -> list[SimDevice]:
    """Create the demo units, devices of all four types and contacts of every role."""
    devices: list[SimDevice] = []
    with conn.transaction():
        for i, (uid, name, district, lat, lon, cat) in enumerate(UNITS, start=1):
            reg.add_unit(
                conn,
                uid,
                name,
                district=district,
                grid=f"{district}-G{i}",
                lat=lat,
                lon=lon,
                category=cat,
                address=f"{i} Demo Road",
            )
            faulty = i == 1
            for typ, suffix, attrs in (
                (DeviceType.UTD, "utd", {}),
                (DeviceType.ELECTRICAL, "em", {}),
                (DeviceType.WATER_LEVEL, "wl", {"tank_depth_m": 3.0}),
                (DeviceType.WATER_PRESSURE, "wp", {"min_pressure_mpa": 0.10}),
            ):
                dev_id = f"{uid}-{suffix}"
                reg.add_device(
                    conn,
                    dev_id,
                    uid,
                    typ,
                    model="demo",
                    attributes=attrs,
                    location=f"{name} plant room",
                )
                fault = {
                    DeviceType.ELECTRICAL: 6.0,
                    DeviceType.WATER_LEVEL: 10.0,
                    DeviceType.WATER_PRESSURE: 14.0,
                    DeviceType.UTD: 18.0,
                }[typ]
                devices.append(
                    SimDevice(
                        dev_id, typ, fault if faulty else None, fault + 40 if faulty else None
                    )
                )
            # A second demo keeps the contacts (notifications refer to them) instead of re-adding.
            has_contacts = unit_has_contacts(conn, uid)
            for role, who in (
                ()
                if has_contacts
                else (
                    ("fire_safety_manager", "Wang Fang"),
                    ("property_manager", "Li Wei"),
                    ("grid_worker", "Zhang Min"),
                )
            ):
                reg.add_contact(
                    conn,
                    f"{who} ({name})",
                    role,
                    unit_id=uid,
                    phone=f"+86 138 0000 {i:02d}{len(role):02d}",
                    locale="zh-CN",
                )
    return devices


def _device_passwords(
    settings: Settings, ep: Endpoints, devices: list[SimDevice]
) -> dict[str, str]:
    """Fresh passwords for the demo devices, installed in the broker (after `broker sync`)."""
    passwords = {d.id: new_password() for d in devices}
    with psycopg.connect(ep.dsn(), autocommit=True) as conn, conn.transaction():
        for dev_id, password in passwords.items():
            reg.set_password_hash(conn, dev_id, mosquitto_hash(password))
    res = sync(settings)
    print(f"  broker auth is on: demo devices log in with new passwords ({res.action})", flush=True)
    return passwords


def _printer(r: Received) -> None:
    a = r.body.get("alert", {})
    status = str(r.body.get("status", "?")).upper()
    sig = "signature ok" if r.signature_ok else "BAD SIGNATURE"
    print(
        f"[webhook] {status:8} {a.get('severity', '?'):8} {a.get('rule_id')} at "
        f"{a.get('unit_name')}: {a.get('message', {}).get('en')} / "
        f"{a.get('message', {}).get('zh-CN')} ({sig})",
        flush=True,
    )


def run_demo(settings: Settings, duration_s: float | None = None) -> int:
    """Run the demo until Ctrl-C (or for duration_s); return an exit code."""
    t0 = time.monotonic()
    print("firesentry demo: starting private Mosquitto and PostgreSQL ...", flush=True)
    ep = resolve_endpoints(settings, start=True)
    applied = migrate(
        ep.migrate_dsn(),
        settings.storage.backend,
        lock_timeout_s=settings.database.migrate_lock_timeout_s,
    )
    print(
        f"  broker 127.0.0.1:{ep.mqtt_port}, database 127.0.0.1:{ep.db_port} "
        # `up` migrates as the schema owner, so by now there is rarely anything left to apply.
        f"(schema up to date{f'; applied {len(applied)} migrations' if applied else ''})",
        flush=True,
    )
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        devices = seed(conn)
    print(f"  seeded {len(UNITS)} units and {len(devices)} devices of all four types", flush=True)
    passwords = _device_passwords(settings, ep, devices) if ep.mqtt_username else None
    secret = secrets.token_hex(16)
    first_alert = threading.Event()

    def on_receive(r: Received) -> None:
        if not first_alert.is_set():
            first_alert.set()
            print(f"  first alert received {time.monotonic() - t0:.1f}s after start", flush=True)
        _printer(r)

    receiver = WebhookReceiver(secret.encode(), on_receive).start()
    hook = WebhookConfig.model_validate({"url": receiver.url, "secret": SecretStr(secret)})
    demo_settings = settings.model_copy(
        update={"notify": settings.notify.model_copy(update={"webhooks": {"demo": hook}})}
    )
    engine = Engine(demo_settings, ep)
    fleet = DemoFleet(
        ep.mqtt_host,
        ep.mqtt_port,
        devices,
        interval_s=2.0,
        prefix=settings.mqtt.topic_prefix,
        passwords=passwords,
    )
    stop = threading.Event()
    if duration_s is not None:
        timer = threading.Timer(duration_s, stop.set)
        timer.daemon = True
        timer.start()
    print(
        f"  webhook receiver on {receiver.url}; simulator publishing every 2 s; "
        "thresholds are crossed from 6 s on. Ctrl-C stops.",
        flush=True,
    )
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    console = None
    death: WorkerDeath | None = None
    try:
        engine.start()
        console = start_demo_console(demo_settings, ep)
        if console is not None:
            print(f"  control-room console (demo operator token): {console[1]}", flush=True)
            engine.watch("api", api_probe(console[0]))
        fleet.start()
        # The same supervision as `firesentry run`: a dead worker ends the demo with 70.
        while not stop.wait(0.5):
            death = engine.dead_worker()
            if death is not None:
                engine.report_death(death)
                print(
                    f"demo failed: the {death.worker} worker died ({death.error!r}); see the log "
                    "above for its traceback",
                    file=sys.stderr,
                    flush=True,
                )
                break
    finally:
        # Stop the devices first so that the engine drains everything they sent.
        fleet.stop()
        engine.stop(deregister=death is None)
        if console is not None:
            console[0].stop()
        receiver.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    print(
        f"demo stopped: {fleet.published} messages published, "
        f"{len(receiver.received)} webhook notifications received.",
        flush=True,
    )
    print("Services keep running for the next demo; `firesentry down` stops them.", flush=True)
    if death is not None:
        return EX_SOFTWARE
    return 0 if receiver.received or duration_s is None else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(Settings()))
