"""`firesentry demo`: private services, a seeded fleet, the engine, a simulator and a receiver."""

from __future__ import annotations

import datetime as dt
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import structlog
import yaml
from pydantic import SecretStr

from alerts.routing import DEFAULT_ROUTING
from alerts.shape import ROLE_NAMES
from api.privacy import mask_phone
from devices.catalog import DeviceType
from devices.credentials import mosquitto_hash, new_password
from firesentry.app import (
    EX_SOFTWARE,
    Engine,
    WorkerDeath,
    embedded_services,
    resolve_endpoints,
)
from firesentry.broker import gateway_account, sync
from firesentry.config import Fire119Config, RobotConfig, Settings, SmsProviderConfig
from firesentry.config import WebhookReceiver as WebhookConfig
from firesentry.demo_gateway import DemoGatewayLink
from firesentry.embedded import Endpoints
from firesentry.serve import api_probe, public_url, start_demo_console
from gateway.gb26875 import GatewayOptions
from simulators.demo_fleet import DemoFleet, SimDevice
from simulators.scenarios import ScheduledEvent
from simulators.services.provider import ProviderRequest
from simulators.services.robots import FakeWeCom
from simulators.services.sms import FakeSmsGateway
from simulators.services.webhook import Received, WebhookReceiver
from store import grades as store_grades
from store import hazards as store_hazards
from store import health as store_health
from store import registry as reg
from store import units as store_units
from store.demo_seed import DemoContact, PastAlert, put_contact, put_history
from store.gateway import ADDRESS_ATTRIBUTE
from store.hazards import HazardRow
from store.migrate import migrate
from supervision.hazard_loop import HazardOptions, act, report
from supervision.hazards import load_policy
from supervision.model import GRADE_ZH, Grade
from supervision.unit_code import sheet_html
from supervision.unit_code_pdf import find_font, notices_pdf, sheet_pdf

log = structlog.get_logger("demo")

# id, name, district, lat, lon, category, address
UNITS = [
    ("demo-u1", "滨江购物中心", "锦江区", 30.657, 104.081, "high_rise", "锦江区滨江东路 1 号"),
    ("demo-u2", "锦江区第三小学", "锦江区", 30.642, 104.095, "school", "锦江区书院街 3 号"),
    ("demo-u3", "红星纺织厂", "成华区", 30.690, 104.120, "factory", "成华区建设北路 88 号"),
]
LOCATIONS = {
    DeviceType.UTD: "1F 消防控制室",
    DeviceType.ELECTRICAL: "B1 配电室",
    DeviceType.WATER_LEVEL: "B2 消防水池",
    DeviceType.WATER_PRESSURE: "B2 消防泵房",
}
# Seconds after the simulator starts: a fire alarm at the mall first, on its own so that each
# party's message is about it alone; then the plant's electrical, tank and main faults.
FAULTS = {
    ("demo-u1", DeviceType.UTD): 8.0,
    ("demo-u3", DeviceType.ELECTRICAL): 6.0,
    ("demo-u3", DeviceType.WATER_LEVEL): 10.0,
    ("demo-u3", DeviceType.WATER_PRESSURE): 14.0,
}
RECOVER_AFTER_S = 40.0
# The school's fire panel speaks GB/T 26875.3 over TCP through the gateway, as installed UTDs
# do: its status every 5 s, and a detector fault at 12 s, repaired and reset at 20 s.
GB26875_DEVICE = "demo-u2-utd"
GB26875_ADDRESS = 880_002
GB26875_EVENTS = (
    ScheduledEvent(12.0, "fault", "2F 实验室感烟探测器", loop=1, point=16),
    ScheduledEvent(20.0, "reset", "控制器复位"),
)
OPEN_HAZARD = ("found", "notified", "rectifying", "submitted", "reviewed")
# A past week for the risk grade to weigh (closed alerts, added once while they are recent):
# the school had three false alarms (dust from its renovation) and turns yellow; the plant's
# tank was low for 20 h and its panel in fault for a day and a half, and it turns orange.
PAST_WEEK = [
    PastAlert("demo-u2-utd", "fire_alarm", "critical", 30, 0.2, "false_alarm", "dust_steam"),
    PastAlert("demo-u2-utd", "fire_alarm", "critical", 54, 0.3, "false_alarm", "dust_steam"),
    PastAlert("demo-u2-utd", "fire_alarm", "critical", 100, 0.2, "false_alarm", "test"),
    PastAlert("demo-u3-wl", "tank_level_low", "major", 80, 20),
    PastAlert("demo-u3-utd", "panel_fault", "major", 60, 36),
]
# Each unit's parties (one speaks English: each is told in their own language), and the
# district control rooms that watch every unit of their district.
UNIT_PARTIES = {
    "demo-u1": (("王芳", "zh-CN"), ("Li Wei", "en"), ("张敏", "zh-CN")),
    "demo-u2": (("赵磊", "zh-CN"), ("孙丽", "zh-CN"), ("吴昊", "zh-CN")),
    "demo-u3": (("刘洋", "zh-CN"), ("周强", "zh-CN"), ("郑凯", "zh-CN")),
}
UNIT_ROLES = ("fire_safety_manager", "property_manager", "grid_worker")
CONTROL_ROOMS = {"锦江区": "锦江区消防监控中心 陈静", "成华区": "成华区消防监控中心 何军"}
ROBOT = "control-room-group"
ROBOT_TITLE = "消防监控中心值班群 (WeCom group robot)"


def demo_contacts() -> list[DemoContact]:
    """Every party of the demo units and districts, with numbers of their own."""
    out = [
        # The last four digits (all a masked number shows) tell unit and role apart: 1001.
        DemoContact(name, role, f"+8613800{i:02d}{i}{k:03d}", locale, unit_id=uid)
        for i, (uid, *_) in enumerate(UNITS, start=1)
        for k, (role, (name, locale)) in enumerate(
            zip(UNIT_ROLES, UNIT_PARTIES[uid], strict=True), start=1
        )
    ]
    out += [
        DemoContact(name, "control_room", f"+861390000{d}119", "zh-CN", district=district)
        for d, (district, name) in enumerate(CONTROL_ROOMS.items(), start=1)
    ]
    return out


def seed(conn: psycopg.Connection[Any]) -> list[SimDevice]:
    """Create the demo units, devices of all four types and contacts of every role."""
    devices: list[SimDevice] = []
    with conn.transaction():
        for i, (uid, name, district, lat, lon, cat, address) in enumerate(UNITS, start=1):
            reg.add_unit(
                conn,
                uid,
                name,
                district=district,
                grid=f"{district}-G{i}",
                lat=lat,
                lon=lon,
                category=cat,
                address=address,
            )
            for typ, suffix, attrs in (
                (DeviceType.UTD, "utd", {}),
                (DeviceType.ELECTRICAL, "em", {}),
                (DeviceType.WATER_LEVEL, "wl", {"tank_depth_m": 3.0}),
                (DeviceType.WATER_PRESSURE, "wp", {"min_pressure_mpa": 0.10}),
            ):
                dev_id = f"{uid}-{suffix}"
                gb = dev_id == GB26875_DEVICE
                reg.add_device(
                    conn,
                    dev_id,
                    uid,
                    typ,
                    model="demo (GB/T 26875.3)" if gb else "demo",
                    attributes={ADDRESS_ATTRIBUTE: str(GB26875_ADDRESS)} if gb else attrs,
                    location=LOCATIONS[typ],
                )
                if gb:
                    continue  # it speaks GB/T 26875.3 through the gateway, not MQTT
                fault = FAULTS.get((uid, typ))
                devices.append(
                    SimDevice(
                        dev_id, typ, fault, fault + RECOVER_AFTER_S if fault is not None else None
                    )
                )
        # Updated in place on a second demo: notifications of the first refer to them.
        for c in demo_contacts():
            put_contact(conn, c)
        put_history(conn, PAST_WEEK)
    return devices


def seed_hazard(conn: psycopg.Connection[Any], opts: HazardOptions) -> HazardRow:
    """A hazard in progress at the plant (reported, urged, being rectified), once: a second
    demo finds it open and leaves it as it is."""
    open_ = store_hazards.search(
        conn, store_hazards.HazardFilter(unit_id="demo-u3", states=OPEN_HAZARD)
    )
    if open_:
        return open_[0]
    now = dt.datetime.now(dt.UTC)
    h = report(
        conn,
        opts,
        unit_id="demo-u3",
        category="storage",
        severity="major",
        description="B2 消防泵房门口堆放纺织原料，堵塞通道",
        found_by="郑凯（网格员）",
        responsible="周强（物业）",
        now=now,
    )
    act(conn, opts, h.id, "notify", "何军（监控中心）")
    return act(conn, opts, h.id, "rectify", "周强（物业）", comment="已安排叉车清运")


# How long a stopping demo waits for the notifications already due (the outbox polls each
# second; a few rounds are plenty on an idle machine, more on a loaded CI worker).
DRAIN_S = 15.0


def drain_outbox(ep: Endpoints, within_s: float) -> None:
    """Wait until no notification is due or being sent, for at most `within_s`."""
    deadline = time.monotonic() + within_s
    try:
        with psycopg.connect(ep.dsn(), autocommit=True, connect_timeout=3) as conn:
            left = store_health.due_or_sending(conn)
            if left:
                print(f"sending the {left} notifications already due before stopping", flush=True)
            while left and time.monotonic() < deadline:
                time.sleep(0.2)
                left = store_health.due_or_sending(conn)
    except psycopg.OperationalError as exc:
        print(f"could not wait for the outbox ({exc}); stopping", flush=True)


def write_code_sheets(ep: Endpoints, folder: Path, url: str) -> list[Path]:
    """Each district's sheet of QR codes (一店一码, with the grades as they are now) as HTML
    to open and print and, where a CJK font is installed, as PDF, with its units' 告知牌."""
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        rows = store_units.unit_codes(conn)
    font = find_font()
    today = dt.date.today()
    paths = []
    for district in sorted({r.district for r in rows}):
        base = folder.resolve() / f"qr-sheet-{district}"
        mine = [r for r in rows if r.district == district]
        title = f"{district} 一店一码"
        base.with_suffix(".html").write_text(sheet_html(mine, url, title), encoding="utf-8")
        paths.append(base.with_suffix(".html"))
        if font is not None:
            base.with_suffix(".pdf").write_bytes(sheet_pdf(mine, url, today, font, title))
            notices = folder.resolve() / f"notices-{district}.pdf"
            notices.write_bytes(notices_pdf(mine, url, today, font, f"{district} 四色告知牌"))
            paths += [base.with_suffix(".pdf"), notices]
    return paths


def demo_routing(settings: Settings) -> Path:
    """The shipped routing, on SMS only (the demo has no mail server), with the control room's
    group robot told of everything at once; written beside the private services."""
    text = resources.files("alerts").joinpath(DEFAULT_ROUTING).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for route in data["routes"]:
        for n, tier in enumerate(route["tiers"]):
            tier["channels"] = [c for c in tier.get("channels", ["sms"]) if c == "sms"]
            if n == 0:
                tier["robots"] = [*tier.get("robots", []), ROBOT]
    path = settings.embedded.dir / "demo-routing.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `firesentry demo`: the shipped routing, SMS only, plus the group robot.\n"
        + yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return path


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
    say(
        f"[webhook] {status:8} {a.get('severity', '?'):8} {a.get('rule_id')} at "
        f"{a.get('unit_name')}: {a.get('message', {}).get('en')} / "
        f"{a.get('message', {}).get('zh-CN')} ({sig})"
    )


def _printer_119(r: Received) -> None:
    """Print a forwarding as the 119 command centre reads it."""
    b = r.body
    sig = "signature ok" if r.signature_ok else "BAD SIGNATURE"
    say(
        f"[119 ← {b.get('centre')}] {b.get('verification')}: "
        f"{b.get('message', {}).get('zh-CN')} ({len(b.get('contacts', []))} contacts, {sig})"
    )


_PRINT = threading.Lock()


def say(text: str) -> None:
    """One line (or block) on stdout, whole: the receivers print from their own threads, and
    print() writes the text and its newline separately, so lines ran into each other."""
    with _PRINT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def sms_printer(contacts: list[DemoContact]) -> Callable[[ProviderRequest], None]:
    """Print each SMS the gateway takes as its receiver reads it: role, name, masked number."""
    by_phone = {c.phone: c for c in contacts}

    def show(req: ProviderRequest) -> None:
        phone = str(req.body.get("to", ""))
        c = by_phone.get(phone)
        # Roles are the five the contacts table allows.
        who = f"{ROLE_NAMES[c.role].en} {c.name}" if c is not None else "unknown party"
        lang = f", {c.locale}" if c is not None else ""
        say(f"[sms → {who} {mask_phone(phone)}{lang}] {req.body.get('text')}")

    return show


def _robot_printer(req: ProviderRequest) -> None:
    """Print a group robot's message: its title and where the alert is."""
    content = str(req.body.get("markdown", {}).get("content") or req.body.get("text", {}))
    title, _, rest = content.partition("\n")
    wanted = ("**单位**", "**地址**", "**设备位置**", "**报警点位**", "**Unit**", "**Address**")
    where = [line.replace("**", "") for line in rest.splitlines() if line.startswith(wanted)]
    lines = [f"[robot → {ROBOT_TITLE}] {title.removeprefix('### ')}"]
    if where:
        lines.append(f"    {'; '.join(where)}")
    say("\n".join(lines))


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
    print(
        f"  seeded {len(UNITS)} units and {len(devices) + 1} devices of all four types (one speaks"
        " GB/T 26875.3)",
        flush=True,
    )
    hazard_opts = HazardOptions(
        load_policy(settings.supervision.hazard_policy), "Asia/Shanghai", frozenset({"sms"})
    )
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        hazard = seed_hazard(conn, hazard_opts)
    print(
        f"  a hazard in progress at 红星纺织厂 (#{hazard.id}, {hazard.state}): the console's "
        "Hazards view, or the unit's page; 一店一码: the map's ▦ prints a district's QR sheet",
        flush=True,
    )
    passwords = _device_passwords(settings, ep, devices) if ep.mqtt_username else None
    # With broker accounts on, the gateway logs in with its own (written by the sync above).
    gw_user, gw_password = (
        gateway_account(embedded_services(settings).mosquitto.root)
        if ep.mqtt_username
        else (None, None)
    )
    secret = secrets.token_hex(16)
    first_alert = threading.Event()

    def on_receive(r: Received) -> None:
        if not first_alert.is_set():
            first_alert.set()
            print(f"  first alert received {time.monotonic() - t0:.1f}s after start", flush=True)
        _printer(r)

    receiver = WebhookReceiver(secret.encode(), on_receive).start()
    # The parties' phones and the control room's group chat, played by local fakes that speak
    # the providers' HTTP APIs; the engine is configured as it would be for the real ones.
    sms_token, robot_key = secrets.token_hex(16), secrets.token_hex(8)
    gateway = FakeSmsGateway(token=sms_token)
    gateway.on_accept = sms_printer(demo_contacts())
    gateway.start()
    wecom = FakeWeCom(keys=[robot_key])
    wecom.on_accept = _robot_printer
    wecom.start()
    # The 119 command centre, played by a receiver that checks the signature. The demo's fire
    # alarm is forwarded unverified after 15 s (policy forward_unverified), or confirmed when
    # someone verifies it on the console first.
    secret_119 = secrets.token_hex(16)
    centre = WebhookReceiver(secret_119.encode(), _printer_119).start()
    fire_119 = Fire119Config.model_validate(
        {
            "url": centre.url,
            "secret": SecretStr(secret_119),
            "centre": "成都市消防监控中心（演示）",
            "forward_unverified": True,
        }
    )
    hook = WebhookConfig.model_validate({"url": receiver.url, "secret": SecretStr(secret)})
    sms = SmsProviderConfig(kind="generic", url=gateway.url, token=SecretStr(sms_token))
    robot = RobotConfig.model_validate({"kind": "wecom", "url": wecom.robot_url(robot_key)})
    demo_settings = settings.model_copy(
        update={
            "notify": settings.notify.model_copy(
                update={
                    "webhooks": {"demo": hook},
                    "sms": {"demo-gateway": sms},
                    "robots": {ROBOT: robot},
                    "email": None,
                    "fire_119": fire_119,
                    "verify_within_s": 15.0,
                    "routing_file": demo_routing(settings),
                }
            ),
            # Grades follow the scenarios within the demo's minute, not every 5 minutes.
            "supervision": settings.supervision.model_copy(update={"grade_every_s": 15.0}),
        }
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
        f"  webhook receiver on {receiver.url}; SMS gateway on {gateway.url}; group robot on "
        f"{wecom.base_url}\n"
        "  every party of a unit is told by SMS in their own language, the control room also "
        "in its group chat.\n"
        "  simulator publishing every 2 s; a fire alarm at 滨江购物中心 at 8 s, faults at "
        "红星纺织厂 from 6 s on.\n"
        "  a fire alarm nobody verifies within 15 s is escalated and forwarded to 119 as "
        "unverified; verify it on the console first and 119 gets a confirmed fire. Ctrl-C stops.",
        flush=True,
    )
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    console = None
    link: DemoGatewayLink | None = None
    death: WorkerDeath | None = None
    try:
        engine.start()
        console = start_demo_console(demo_settings, ep)
        if console is not None:
            print(f"  control-room console (demo operator token): {console[1]}", flush=True)
            engine.watch("api", api_probe(console[0]))
        fleet.start()
        link = DemoGatewayLink(
            GatewayOptions(
                "127.0.0.1",
                0,
                ep.dsn(),
                ep.mqtt_host,
                ep.mqtt_port,
                topic_prefix=settings.mqtt.topic_prefix,
                mqtt_username=gw_user,
                mqtt_password=gw_password,
                client_id="demo-gateway-gb26875",
            ),
            GB26875_ADDRESS,
            GB26875_EVENTS,
        )
        port = link.start()
        print(
            f"  锦江区第三小学's panel speaks GB/T 26875.3 over TCP to the gateway on 127.0.0.1:"
            f"{port} (address {GB26875_ADDRESS}); a detector fault there at 12 s",
            flush=True,
        )
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
        # Stop the devices first so that the engine drains everything they sent, and let the
        # notifications already due go out, so the fake receivers print what the run decided.
        fleet.stop()
        if link is not None:
            link.stop()
        if death is None:
            drain_outbox(ep, within_s=DRAIN_S)
        engine.stop(deregister=death is None)
        if console is not None:
            console[0].stop()
        receiver.stop()
        centre.stop()
        gateway.stop()
        wecom.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    phones = {r.body.get("to") for r in gateway.requests}
    print(
        f"demo stopped: {fleet.published} messages published, "
        f"{len(receiver.received)} webhook notifications received, "
        f"{len(gateway.requests)} SMS to {len(phones)} people, "
        f"{len(wecom.requests)} group robot messages, "
        f"{len(centre.received)} forwardings to 119.",
        flush=True,
    )
    if link is not None:
        u = link.utd_stats
        print(
            f"GB/T 26875.3: {u.sent} frames from 锦江区第三小学's UTD, {u.confirmed} confirmed "
            f"after commit, {u.resent} sent again, {u.unconfirmed} unconfirmed; "
            f"{link.gateway_stats.dead_letters} dead letters",
            flush=True,
        )
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        grades = store_grades.current_grades(conn, [u[0] for u in UNITS])
    if grades:
        said = ", ".join(
            f"{name} {GRADE_ZH[Grade(grades[uid].grade)]} {grades[uid].grade}"
            for uid, name, *_ in UNITS
            if uid in grades
        )
        print(f"risk grades: {said} (firesentry grades history <unit> says why)", flush=True)
    sheets = write_code_sheets(ep, settings.embedded.dir, public_url(demo_settings))
    print(f"一店一码 sheets to print: {', '.join(str(p) for p in sheets)}", flush=True)
    print("Services keep running for the next demo; `firesentry down` stops them.", flush=True)
    if death is not None:
        return EX_SOFTWARE
    return 0 if receiver.received or duration_s is None else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(Settings()))
