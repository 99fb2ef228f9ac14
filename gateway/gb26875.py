"""The GB/T 26875.3-2011 gateway: user information transmission devices over TCP in, events of
our MQTT contract out, each frame confirmed only once ingest has committed what it said.

One asyncio task per connection reads frames (devices/gb26875/stream.py resynchronises after
anything that is not one). The first frame names the UTD by its source address; an address no
registered `user_transmission_device` has (attribute `gb26875_address`) is denied, logged and
the connection closed: nothing of it is stored. A frame's events go to the broker as the
device's own messages (`<prefix>/<device id>/event`, QoS 1) with a `seq` made from the event's
bytes, so a resent frame is the same message again and ingest stores it once. The confirm
goes back when every event of the frame is in the events table: the broker's PUBACK is not
enough (Mosquitto saves to disk on an interval), and a UTD that hears nothing re-sends, which
is what it must do (GB 26875.1). A frame that carries no event (a heartbeat, a version, an
analog value) is confirmed once the broker has the heartbeat. Frames that do not decode are
dead-lettered with their bytes and reason, and confirmed: they are kept, and a UTD re-sending
them forever would stall what comes behind. A bad checksum is denied (the standard's answer
to a transmission error), so the UTD sends it again.

Downlink: the centre's clock on connect and whenever the UTD's is more than a minute off, and
查岗 (a duty check) on a period (GB 50440: at most 2 h).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import paho.mqtt.client as mqtt
import psycopg
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from psycopg_pool import ConnectionPool, PoolTimeout

from devices.gb26875 import events as gb_events
from devices.gb26875 import frame as fr
from devices.gb26875 import units as un
from devices.gb26875.frame import Command, Frame, TimeLabel
from devices.gb26875.stream import BadBytes, FrameReader
from ingest.decode import Rejection
from store import gateway as store
from store.deadletters import write_rejections

log = structlog.get_logger("gateway.gb26875")

# A device clock further off than this is not believed for an event's time: the time it was
# received is used (ingest would refuse a time 5 min ahead or 400 days old as a dead letter,
# and an unset clock says 2000 or 2012). A UTD keeps records while its link is down, so a
# time up to a week old is its own.
MAX_BEHIND = dt.timedelta(days=7)
MAX_AHEAD = dt.timedelta(minutes=4)
CLOCK_SYNC_OVER = dt.timedelta(minutes=1)
# Bad bytes from a connection that has not yet sent one good frame: more is not a UTD.
MAX_UNIDENTIFIED_GARBAGE = 16 * 1024
# A UTD's status frames come every few seconds to minutes; one heartbeat to ingest in this
# long is enough for liveness (a device is offline after 3 missed heartbeats of its period,
# 60 s by default), and each one fewer is a message fewer on the broker.
HEARTBEAT_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """Where to listen, the broker and database, and how the UTDs' clocks run."""

    host: str
    port: int
    dsn: str
    mqtt_host: str
    mqtt_port: int
    topic_prefix: str = "fs/v1"
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    timezone: str = "Asia/Shanghai"
    duty_check_s: float = 7200.0  # GB 50440: at most 2 h
    duty_check_timeout_min: int = 10
    commit_poll_s: float = 0.05
    registry_refresh_s: float = 5.0
    client_id: str = "firesentry-gateway-gb26875"


@dataclass
class _Waiting:
    """A frame whose confirm waits for its events' commit."""

    keys: set[store.EventKey]
    send: Callable[[], None]


@dataclass
class Stats:
    """What the gateway did, for logs and tests."""

    frames: int = 0
    confirmed: int = 0
    denied: int = 0
    dead_letters: int = 0
    refused_connections: int = 0
    events: int = 0
    sessions: int = 0


def event_seq(device_num: int, data: bytes, index: int) -> int:
    """A stable seq for the index-th event of a data unit: the same frame sent again gives the
    same seq (its serial number restarts with every connection, so it cannot be the seq)."""
    return zlib.crc32(data + index.to_bytes(2, "little"), device_num) & 0x7FFFFFFF


class Gateway:
    """The TCP server, its sessions, the MQTT publisher and the commit watcher."""

    def __init__(self, options: GatewayOptions) -> None:
        self.options = options
        self.tz = ZoneInfo(options.timezone)
        self.stats = Stats()
        self._utds: dict[int, store.Utd] = {}
        self._waiting: list[_Waiting] = []
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._sessions: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=options.client_id, protocol=mqtt.MQTTv5
        )
        if options.mqtt_username:
            self._mqtt.username_pw_set(options.mqtt_username, options.mqtt_password)
        self._acks: dict[int, Callable[[], None]] = {}
        # Two connections: the commit watcher's, and one for dead letters and the registry.
        self._pool = ConnectionPool(
            options.dsn,
            min_size=1,
            max_size=2,
            kwargs={"autocommit": True, "application_name": "firesentry-gateway"},
            timeout=10,
            reconnect_timeout=5,
            open=False,
            name="gateway",
        )
        self._mqtt.on_publish = self._on_publish
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_disconnect = self._on_disconnect

    # ---------- life ----------

    @property
    def port(self) -> int:
        """The port it listens on (the one asked, or the one given for 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Load the UTDs, connect to the broker, listen."""
        self._loop = asyncio.get_running_loop()
        self._pool.open(wait=False)
        await self._refresh()
        self._mqtt.connect(self.options.mqtt_host, self.options.mqtt_port)
        self._mqtt.loop_start()
        self._server = await asyncio.start_server(
            self._session, self.options.host, self.options.port, limit=2**16
        )
        self._tasks = [
            asyncio.create_task(self._watch_commits(), name="commit-watch"),
            asyncio.create_task(self._refresh_every(), name="registry-refresh"),
        ]
        log.info("gateway listening", host=self.options.host, port=self.port, utds=len(self._utds))

    async def stop(self) -> None:
        """Stop listening, end the sessions, disconnect."""
        if self._server is not None:
            self._server.close()
        tasks = [*self._tasks, *self._sessions]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._mqtt.disconnect()
        self._mqtt.loop_stop()
        self._pool.close()

    async def _refresh(self) -> None:
        self._utds = await asyncio.to_thread(self._load)

    def _load(self) -> dict[int, store.Utd]:
        with self._pool.connection() as conn:
            return store.utds_by_address(conn)

    async def _refresh_every(self) -> None:
        while True:
            await asyncio.sleep(self.options.registry_refresh_s)
            try:
                await self._refresh()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.warning("gateway cannot reload the UTDs; keeps the ones it has", error=str(exc))

    # ---------- publishing ----------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        # A refused login (a broker with accounts, the gateway given none) would otherwise
        # show only as UTDs that never hear a confirm.
        if rc.is_failure:
            log.error(
                "gateway's broker login refused", reason=str(rc), user=self.options.mqtt_username
            )
        else:
            log.info("gateway connected to the broker")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "value", 0):  # 0: the gateway's own disconnect at stop
            log.warning("gateway lost the broker; paho reconnects", reason=str(rc))

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        done = self._acks.pop(mid, None)
        if done is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(done)

    def _publish(self, topic: str, body: dict[str, Any], done: Callable[[], None]) -> None:
        info = self._mqtt.publish(topic, msgspec.json.encode(body), qos=1)
        self._acks[info.mid] = done

    # ---------- commits ----------

    async def _watch_commits(self) -> None:
        while True:
            await asyncio.sleep(self.options.commit_poll_s)
            if not self._waiting:
                continue
            keys = list({k for w in self._waiting for k in w.keys})
            try:
                found = await asyncio.to_thread(self._committed, keys)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                # Nothing is confirmed meanwhile: the UTDs re-send, which is what they are for.
                log.warning("gateway cannot see the database; confirms wait", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            still = []
            for w in self._waiting:
                w.keys -= found
                if w.keys:
                    still.append(w)
                else:
                    w.send()
            self._waiting = still

    def _committed(self, keys: list[store.EventKey]) -> set[store.EventKey]:
        with self._pool.connection() as conn:
            return store.committed(conn, keys)

    async def _dead_letter(
        self, *, source: str, device_id: str | None, reason: str, detail: str, raw: bytes
    ) -> None:
        """Keep bytes the gateway could not take, with the reason: whole in the payload, and
        as hex in the detail for people reading the table."""
        row = Rejection(source, device_id, reason, f"{detail}; raw {raw[:1100].hex(' ')}", raw)

        def write() -> None:
            with self._pool.connection() as conn:
                write_rejections(conn, [row])

        await asyncio.to_thread(write)
        self.stats.dead_letters += 1

    # ---------- a session ----------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        session = _Session(self, writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        self.stats.sessions += 1
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            await session.run(reader)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except (psycopg.Error, PoolTimeout) as exc:
            # Its frame is not confirmed: the UTD reconnects and sends it again.
            log.warning(
                "gateway ends a session: the database failed it", peer=session.peer, error=str(exc)
            )
        finally:
            if task is not None:
                self._sessions.discard(task)
            writer.close()


@dataclass
class _Session:
    """One UTD's connection."""

    gw: Gateway
    writer: asyncio.StreamWriter
    peer: str
    utd: store.Utd | None = None
    reader: FrameReader = field(default_factory=FrameReader)
    garbage: int = 0
    serial: int = 0  # the centre's own serial numbers for what it sends down
    synced: bool = False
    # Addresses of what the centre sends: its own (the UTD's destination) and the UTD's.
    centre: bytes = bytes(6)
    device: bytes = bytes(6)
    beat_at: float = float("-inf")  # when the last heartbeat went to the broker (loop time)

    def _now(self) -> dt.datetime:
        return dt.datetime.now(self.gw.tz)

    def _send(self, f: Frame) -> None:
        if not self.writer.is_closing():
            self.writer.write(fr.encode(f))

    def _confirm(self, f: Frame) -> Callable[[], None]:
        def send() -> None:
            self._send(f.reply(Command.CONFIRM, TimeLabel.of(self._now())))
            self.gw.stats.confirmed += 1

        return send

    def _down(self, unit: un.DataUnit) -> None:
        """A command of the centre to this UTD, with the centre's own serial."""
        self.serial = (self.serial + 1) & 0xFFFF
        data = un.encode(unit)
        now = TimeLabel.of(self._now())
        self._send(Frame(self.serial, Command.CONTROL, data, now, self.centre, self.device))

    async def run(self, stream: asyncio.StreamReader) -> None:
        """Read until the UTD goes."""
        duty = asyncio.create_task(self._duty_checks())
        try:
            while True:
                chunk = await stream.read(4096)
                if not chunk:
                    left = self.reader.close()
                    if left is not None:
                        await self._bad(left)
                    return
                for item in self.reader.feed(chunk):
                    if isinstance(item, BadBytes):
                        await self._bad(item)
                        if self.utd is None and self.garbage > MAX_UNIDENTIFIED_GARBAGE:
                            log.warning(
                                "gateway drops a connection that sends no frame", peer=self.peer
                            )
                            return
                    elif not await self._frame(item):
                        return
                await self.writer.drain()
        finally:
            duty.cancel()

    async def _bad(self, b: BadBytes) -> None:
        self.garbage += len(b.raw)
        device = self.utd.id if self.utd else None
        log.warning(
            "gateway dead-letters bytes that are no frame",
            peer=self.peer,
            device=device,
            reason=b.reason,
            size=len(b.raw),
        )
        await self.gw._dead_letter(
            source=f"gb26875/{device or self.peer}",
            device_id=device,
            reason="bad_frame",
            detail=b.reason,
            raw=b.raw,
        )
        if "checksum" in b.reason and len(b.raw) >= fr.OVERHEAD:
            # A transmission error: deny, the UTD sends it again (§6.6).
            serial = int.from_bytes(b.raw[2:4], "little")
            self._send(
                Frame(
                    serial, Command.DENY, b"", TimeLabel.of(self._now()), b.raw[18:24], b.raw[12:18]
                )
            )
            self.gw.stats.denied += 1

    async def _frame(self, f: Frame) -> bool:
        """Handle one frame; False: the connection is to end."""
        self.gw.stats.frames += 1
        address = fr.address_int(f.source)
        utd = self.gw._utds.get(address)
        if utd is None or (self.utd is not None and utd.id != self.utd.id):
            log.warning(
                "gateway refuses a UTD it does not know",
                peer=self.peer,
                address=address,
                hint="register the device with attribute gb26875_address set to this number",
            )
            self._send(f.reply(Command.DENY, TimeLabel.of(self._now())))
            self.gw.stats.denied += 1
            self.gw.stats.refused_connections += 1
            await self.writer.drain()
            return False
        if self.utd is None:
            self.utd = utd
            self.centre, self.device = f.destination, f.source
            log.info("gateway session", peer=self.peer, device=utd.id, address=address)
        if f.command == Command.SEND:
            await self._send_data(f)
        elif f.command in (Command.CONFIRM, Command.DENY, Command.REPLY):
            log.info(
                "gateway hears the UTD answer", device=utd.id, command=f.command, serial=f.serial
            )
        else:
            log.info(
                "gateway ignores a command it does not serve", device=utd.id, command=f.command
            )
        return True

    async def _send_data(self, f: Frame) -> None:
        assert self.utd is not None
        utd, prefix, now = self.utd, self.gw.options.topic_prefix, self._now()
        confirm = self._confirm(f)
        if len(f.data) < 2:
            # An empty unit (a registration) or a vendor's one-byte heartbeat: alive.
            self._heartbeat(now, confirm)
            return
        try:
            unit = un.decode(f.data)
        except un.DataUnitError as exc:
            await self.gw._dead_letter(
                source=f"gb26875/{utd.id}",
                device_id=utd.id,
                reason="malformed",
                detail=str(exc),
                raw=fr.encode(f),
            )
            confirm()
            return
        self._check_clock(f, now)
        reading = gb_events.read(unit, self.gw.tz)
        if reading.duty_answer:
            log.info("gateway: the unit answered the duty check (查岗)", device=utd.id)
        if not reading.events:
            self._heartbeat(now, confirm)
            return
        keys: set[store.EventKey] = set()
        for i, e in enumerate(reading.events):
            at = e.at if e.at is not None and now - MAX_BEHIND <= e.at <= now + MAX_AHEAD else now
            at = at.replace(microsecond=(at.microsecond // 1000) * 1000)
            ts_ms = int(at.timestamp() * 1000)
            seq = event_seq(utd.num, f.data, i)
            body: dict[str, Any] = {"ts": ts_ms, "seq": seq, "kind": str(e.kind), "text": e.text}
            if e.loop is not None:
                body["loop"], body["point"] = e.loop, e.point
            keys.add((utd.num, dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC), seq))
            self.gw._publish(f"{prefix}/{utd.id}/event", body, lambda: None)
            self.gw.stats.events += 1
        self.gw._waiting.append(_Waiting(keys, confirm))

    def _heartbeat(self, now: dt.datetime, done: Callable[[], None]) -> None:
        """The UTD is alive: tell ingest (at most every HEARTBEAT_EVERY_S), then confirm."""
        assert self.utd is not None
        loop = asyncio.get_running_loop()
        if loop.time() - self.beat_at < HEARTBEAT_EVERY_S:
            # A heartbeat the broker took moments ago says it already; the frame carries
            # nothing else to keep.
            done()
            return
        self.beat_at = loop.time()
        body = {"ts": int(now.timestamp() * 1000), "metrics": {}}
        self.gw._publish(f"{self.gw.options.topic_prefix}/{self.utd.id}/telemetry", body, done)

    def _check_clock(self, f: Frame, now: dt.datetime) -> None:
        sent = f.time.to_datetime(self.gw.tz)
        if self.synced and sent is not None and abs(sent - now) <= CLOCK_SYNC_OVER:
            return
        # On the first data of a session, and whenever the UTD's clock is off: the centre's.
        self._down(un.unit(un.DataType.SYNC_CLOCK, [un.SyncClock(TimeLabel.of(now))]))
        self.synced = True

    async def _duty_checks(self) -> None:
        while True:
            await asyncio.sleep(self.gw.options.duty_check_s)
            if self.utd is None:
                continue
            minutes = self.gw.options.duty_check_timeout_min
            self._down(un.unit(un.DataType.DUTY_CHECK, [un.DutyCheck(minutes)]))
