"""The GB/T 26875.3 gateway end to end: a UTD on TCP, the real broker, ingest, PostgreSQL and
a webhook receiver.

The unhappy paths first: ingest is down when the fire alarm comes, so no confirm may go back
(the UTD must re-send), and once ingest is up the re-sent frame is confirmed and stored once;
an unknown UTD is denied and nothing of it is stored; a frame with a bad checksum is
dead-lettered with its bytes and denied, and the session goes on with the next frame.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from devices.catalog import DeviceType
from devices.gb26875 import frame as fr
from devices.gb26875 import units as un
from devices.gb26875.frame import Command, Frame, TimeLabel
from devices.gb26875.stream import FrameReader
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from gateway.gb26875 import Gateway, GatewayOptions
from simulators.services.webhook import WebhookReceiver
from store import registry as reg
from tests.e2e.conftest import SECRET
from tests.helpers import engine_settings, scalar

pytestmark = pytest.mark.e2e
CST = ZoneInfo("Asia/Shanghai")
ADDRESS = 100_200
CENTRE = fr.address(1)


@pytest.fixture()
def utd_unit(db: Endpoints) -> Endpoints:
    """A shop whose fire panel's UTD has GB/T 26875.3 address 100200."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Lotus Hotpot", address="12 Jiefang Rd", district="D1")
        reg.add_device(
            conn,
            "utd-1",
            "u1",
            DeviceType.UTD,
            location="1F fire control room",
            attributes={"gb26875_address": str(ADDRESS)},
        )
    return db


def make_gateway(ep: Endpoints, prefix: str, **options: Any) -> Gateway:
    """A gateway on a free port of the test services."""
    return Gateway(
        GatewayOptions(
            "127.0.0.1",
            0,
            ep.dsn(),
            ep.mqtt_host,
            ep.mqtt_port,
            topic_prefix=prefix,
            client_id=f"gw-{uuid.uuid4().hex[:8]}",
            **options,
        )
    )


@pytest.fixture()
async def gateway(utd_unit: Endpoints, prefix: str) -> AsyncIterator[Gateway]:
    """The gateway on a free port, speaking for the registered UTDs."""
    gw = make_gateway(utd_unit, prefix)
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture()
def start_engine(
    utd_unit: Endpoints, prefix: str, receiver: WebhookReceiver
) -> Iterator[Callable[[], Engine]]:
    """Start the engine when the test says (ingest down until then)."""
    started: list[Engine] = []

    def start() -> Engine:
        settings = engine_settings(
            prefix,
            f"ingest-{uuid.uuid4().hex[:8]}",
            notify={"webhooks": {"test": {"url": receiver.url, "secret": SECRET}}},
        )
        e = Engine(settings, utd_unit)
        e.start()
        assert e.consumer.wait_connected(10), "engine did not connect to the broker"
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()


class Utd:
    """A UTD's side of the link: frames out, the centre's frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames = FrameReader()
        self.heard: list[Frame] = []
        self.closed = False

    @classmethod
    async def connect(cls, gw: Gateway) -> Utd:
        r, w = await asyncio.open_connection("127.0.0.1", gw.port)
        return cls(r, w)

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def wait_for(self, want: Callable[[Frame], bool], within_s: float) -> Frame | None:
        """The first frame heard from the centre that `want`s, or None after within_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            for f in self.heard:
                if want(f):
                    self.heard.remove(f)
                    return f
            left = deadline - loop.time()
            if left <= 0 or self.closed:
                return None
            try:
                chunk = await asyncio.wait_for(self.reader.read(4096), left)
            except TimeoutError:
                return None
            if not chunk:
                self.closed = True
            self.heard += [f for f in self.frames.feed(chunk) if isinstance(f, Frame)]

    def close(self) -> None:
        self.writer.close()


def fire_alarm_frame(serial: int, at: dt.datetime, address: int = ADDRESS) -> bytes:
    """The panel's smoke detector at loop 2 point 7 in fire alarm, as a UTD sends it."""
    obj = un.ComponentStatus(
        1, 1, 42, (2 << 16) | 7, 0b11, "3F东侧走廊感烟探测器", TimeLabel.of(at)
    )
    data = un.encode(un.unit(un.DataType.COMPONENT_STATUS, [obj]))
    return fr.encode(
        Frame(serial, Command.SEND, data, TimeLabel.of(at), fr.address(address), CENTRE)
    )


def _confirm_of(serial: int) -> Callable[[Frame], bool]:
    return lambda f: f.command == Command.CONFIRM and f.serial == serial


async def test_a_fire_alarm_is_confirmed_only_once_ingest_has_committed_it(
    gateway: Gateway,
    start_engine: Callable[[], Engine],
    receiver: WebhookReceiver,
    utd_unit: Endpoints,
) -> None:
    """Ingest is down: the UTD hears no confirm (the broker's ack is not enough). Ingest comes
    up, the UTD sends the frame again, as GB 26875.1 asks: now it is confirmed, the fire alarm
    is one alert with the detector's loop, point and text, the webhook says so, and the two
    sends are one event."""
    now = dt.datetime.now(CST).replace(microsecond=0)
    frame = fire_alarm_frame(41, now)
    utd = await Utd.connect(gateway)
    await utd.send(frame)
    # Ingest is down: nothing is committed, so no confirm (a bounded wait for its absence).
    assert await utd.wait_for(_confirm_of(41), 2.0) is None
    assert scalar(utd_unit.dsn(), "SELECT count(*) FROM events") == 0

    await asyncio.to_thread(start_engine)
    got = None
    for _ in range(10):  # the UTD re-sends every 2 s (the standard: within 10 s, 3 times)
        await utd.send(frame)
        got = await utd.wait_for(_confirm_of(41), 2.0)
        if got is not None:
            break
    assert got is not None, "no confirm after ingest came up"
    assert got.destination == fr.address(ADDRESS) and got.source == CENTRE and got.data == b""
    # The confirm came after the commit: the event is there (once, though sent several times).
    rows = scalar(
        utd_unit.dsn(),
        "SELECT json_agg(json_build_array(loop_no, point_no, text)) FROM events",
    )
    assert rows == [[2, 7, "3F东侧走廊感烟探测器"]]
    alert = await asyncio.to_thread(lambda: _wait_alert(utd_unit.dsn()))
    assert alert == ("fire_alarm", "critical")
    assert await asyncio.to_thread(
        receiver.wait_for, lambda got: any("3F东侧走廊感烟探测器" in str(r.body) for r in got), 20
    ), "no webhook for the fire alarm"
    # The clock was set on the first data of the session.
    sync = await utd.wait_for(lambda f: f.command == Command.CONTROL, 2.0)
    assert sync is not None and un.decode(sync.data).type == un.DataType.SYNC_CLOCK
    utd.close()


def _wait_alert(dsn: str) -> tuple[str, str]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT rule_id, severity FROM alerts").fetchone()
        if row:
            return str(row[0]), str(row[1])
        time.sleep(0.1)
    raise AssertionError("no alert")


async def test_an_unknown_utd_is_denied_and_nothing_of_it_is_stored(
    gateway: Gateway, utd_unit: Endpoints
) -> None:
    """Address 999 is no registered UTD: a deny, the connection closed, no event, no dead
    letter (its bytes are not data of anyone's)."""
    utd = await Utd.connect(gateway)
    await utd.send(fire_alarm_frame(5, dt.datetime.now(CST), address=999))
    deny = await utd.wait_for(lambda f: f.command == Command.DENY, 5.0)
    assert deny is not None and deny.serial == 5
    assert await utd.wait_for(lambda f: True, 2.0) is None and utd.closed
    assert scalar(utd_unit.dsn(), "SELECT count(*) FROM events") == 0
    assert scalar(utd_unit.dsn(), "SELECT count(*) FROM rejected_messages") == 0
    assert gateway.stats.refused_connections == 1
    utd.close()


async def test_a_bad_checksum_is_dead_lettered_denied_and_the_session_goes_on(
    gateway: Gateway, start_engine: Callable[[], Engine], utd_unit: Endpoints
) -> None:
    """A frame with a flipped checksum, then line noise, then a good frame on the same link:
    the bad bytes are kept with the reason and denied; the good frame is confirmed once
    committed."""
    await asyncio.to_thread(start_engine)
    now = dt.datetime.now(CST).replace(microsecond=0)
    bad = bytearray(fire_alarm_frame(7, now))
    bad[-3] ^= 0x5A
    utd = await Utd.connect(gateway)
    await utd.send(bytes(bad) + b"\r\nAT\r\n" + fire_alarm_frame(8, now))
    deny = await utd.wait_for(lambda f: f.command == Command.DENY, 5.0)
    assert deny is not None and deny.serial == 7
    assert await utd.wait_for(_confirm_of(8), 15.0) is not None
    with psycopg.connect(utd_unit.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT reason, detail, payload FROM rejected_messages ORDER BY id"
        ).fetchall()
    # One dead letter for the bad frame and the noise behind it (one run of bytes that are
    # no frame, with the reason of the first): kept whole, and as hex for people.
    ((reason, detail, payload),) = rows
    assert reason == "bad_frame" and detail.startswith("checksum")
    assert bytes(payload) == bytes(bad) + b"\r\nAT\r\n"
    assert bytes(bad).hex(" ")[:40] in detail
    utd.close()


async def test_simulated_utds_run_a_false_alarm_and_power_faults_through_the_gateway(
    utd_unit: Endpoints, prefix: str, start_engine: Callable[[], Engine]
) -> None:
    """The GB/T 26875.3 simulator as three UTDs: one has a false fire alarm and its reset,
    one power faults, all heartbeat and answer the duty checks. Every frame is confirmed (none
    left unconfirmed or denied), and the alerts are the scenarios' own: the detector's fire
    alarm at loop 2 point 31 cleared by the reset, main and backup power faults."""
    from firesentry.cli_simulate import register_utds
    from simulators.gb26875 import run_fleet
    from simulators.scenarios import make

    await asyncio.to_thread(start_engine)
    devices = register_utds(utd_unit.dsn(), "gbsim", 3, 200_000)
    gw = make_gateway(utd_unit, prefix, duty_check_s=2.0, registry_refresh_s=0.5)
    await gw.start()
    try:
        stats = await run_fleet(
            "127.0.0.1",
            gw.port,
            sorted(devices),
            {
                200_000: make("false_fire_alarm", hold_s=2.5).events(),
                200_001: make("power_faults", backup_after_s=1.0, hold_s=2.5).events(),
            },
            onset_s=0.5,
            heartbeat_s=1.0,
            duration_s=5.0,
            resend_s=3.0,
        )
    finally:
        await gw.stop()
    assert stats.connected == 3 and stats.unconfirmed == 0 and stats.denied == 0, stats
    assert stats.confirmed == stats.sent and stats.sent >= 3 * 4, stats
    assert stats.clock_syncs >= 3 and stats.duty_answers >= 3, stats
    with psycopg.connect(utd_unit.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT d.id, a.rule_id, a.point_key, a.state FROM alerts a"
            " JOIN devices d ON d.num = a.device_num ORDER BY d.id, a.rule_id"
        ).fetchall()
    fire, power = devices[200_000], devices[200_001]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (fire, "fire_alarm", "2-31"),
        (power, "backup_power_fault", ""),
        (power, "main_power_fault", ""),
    ], rows
    # The resets cleared them (a fire alarm stays to be verified, as the rules say).
    assert {r[1]: r[3] for r in rows}["main_power_fault"] != "firing", rows


async def test_random_and_mutated_bytes_on_the_link_never_stop_the_gateway(
    gateway: Gateway, start_engine: Callable[[], Engine], utd_unit: Endpoints
) -> None:
    """A UTD's link spewing random bytes and broken copies of a frame (a seeded run, bounded),
    then a good frame: the good frame is confirmed, the gateway still serves a second UTD, and
    every bad run is a dead letter."""
    import random

    await asyncio.to_thread(start_engine)
    rnd = random.Random(26875)
    now = dt.datetime.now(CST).replace(microsecond=0)
    good = fire_alarm_frame(9, now)
    noise = bytearray()
    for _ in range(40):
        if rnd.random() < 0.5:
            noise += rnd.randbytes(rnd.randint(1, 300))
        else:
            broken = bytearray(good)
            for _ in range(rnd.randint(1, 4)):
                broken[rnd.randrange(len(broken))] = rnd.randrange(256)
            noise += broken[: rnd.randint(1, len(broken))]
    utd = await Utd.connect(gateway)
    # The first good frame names the UTD (random bytes from a stranger would be dropped after
    # 16 KiB); then the noise, then a frame that must come through.
    await utd.send(fire_alarm_frame(8, now))
    assert await utd.wait_for(_confirm_of(8), 15.0) is not None
    await utd.send(bytes(noise) + bytes(1100) + good)
    assert await utd.wait_for(_confirm_of(9), 15.0) is not None
    other = await Utd.connect(gateway)
    await other.send(fire_alarm_frame(3, now))
    assert await other.wait_for(_confirm_of(3), 15.0) is not None
    assert scalar(utd_unit.dsn(), "SELECT count(*) FROM rejected_messages") >= 1
    utd.close()
    other.close()
