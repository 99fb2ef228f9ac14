"""Simulated UTDs speaking GB/T 26875.3-2011 over TCP, as installed ones do: a registration,
status heartbeats, and the scenarios' events (fire alarm then reset, faults, power faults) as
binary frames; each frame sent again until the centre confirms it (GB 26875.1: a UTD keeps
sending), the centre's clock taken and its duty checks (查岗) answered.

asyncio, one connection per UTD; a UTD's address is `base_address + i`, which its device must
have as its `gb26875_address` attribute (`register` writes them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from devices.gb26875 import frame as fr
from devices.gb26875 import units as un
from devices.gb26875.frame import Command, Frame, TimeLabel
from devices.gb26875.stream import FrameReader
from simulators.scenarios import ScheduledEvent

# Which bit of which status word a scenario's event kind sets (types 1 and 2).
_COMPONENT_BIT = {
    "fire_alarm": 1,
    "fault": 2,
    "shield": 3,
    "supervisory": 4,
    "start": 5,
    "feedback": 6,
}
_SYSTEM_BIT = {"fault": 2, "main_power_fault": 8, "backup_power_fault": 9, "reset": 13}
SMOKE_DETECTOR = 42  # 点型光电感烟火灾探测器


@dataclass
class UtdStats:
    """What the simulated UTDs did: frames sent (first time), sent again, confirmed, left
    unconfirmed, duty checks answered, and how long confirms took (seconds)."""

    sent: int = 0
    resent: int = 0
    confirmed: int = 0
    unconfirmed: int = 0
    denied: int = 0
    duty_answers: int = 0
    clock_syncs: int = 0
    connected: int = 0
    confirm_s: list[float] = field(default_factory=list)


def event_unit(e: ScheduledEvent, at: dt.datetime) -> un.DataUnit:
    """The data unit a panel sends for a scenario's event."""
    t = TimeLabel.of(at)
    if e.loop is not None and e.kind in _COMPONENT_BIT:
        text = e.text
        while len(text.encode("gb18030")) > un.DESCRIPTION_LEN:
            text = text[:-1]
        address = (e.loop << 16) | (e.point or 0)
        status = 1 | 1 << _COMPONENT_BIT[e.kind]
        obj = un.ComponentStatus(1, 1, SMOKE_DETECTOR, address, status, text, t)
        return un.unit(un.DataType.COMPONENT_STATUS, [obj])
    bit = _SYSTEM_BIT.get(e.kind, 2)
    return un.unit(un.DataType.SYSTEM_STATUS, [un.SystemStatus(1, 1, 1 | 1 << bit, t)])


class SimUtd:
    """One UTD on its connection."""

    def __init__(
        self,
        address: int,
        stats: UtdStats,
        tz: dt.tzinfo,
        resend_s: float = 10.0,
        resends: int = 3,
    ) -> None:
        self.address = fr.address(address)
        self.centre = fr.address(0)
        self.stats = stats
        self.tz = tz
        self.resend_s, self.resends = resend_s, resends
        self.serial = 0
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._writer: asyncio.StreamWriter | None = None

    def _frame(self, command: int, data: bytes, serial: int | None = None) -> bytes:
        if serial is None:
            self.serial = (self.serial + 1) & 0xFFFF
            serial = self.serial
        now = TimeLabel.of(dt.datetime.now(self.tz))
        return fr.encode(Frame(serial, command, data, now, self.address, self.centre))

    async def connect(self, host: str, port: int) -> None:
        """Open the link and start listening to the centre."""
        reader, self._writer = await asyncio.open_connection(host, port)
        self.stats.connected += 1
        self._listener = asyncio.create_task(self._listen(reader))

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        frames = FrameReader()
        while True:
            chunk = await reader.read(4096)
            if not chunk:
                for fut in self._waiting.values():
                    if not fut.done():
                        fut.set_result(Command.DENY)
                return
            for f in frames.feed(chunk):
                if isinstance(f, Frame):
                    self._heard(f)

    def _heard(self, f: Frame) -> None:
        if f.command in (Command.CONFIRM, Command.DENY):
            fut = self._waiting.get(f.serial)
            if fut is not None and not fut.done():
                fut.set_result(f.command)
            return
        if f.command == Command.CONTROL and f.data:
            unit = un.decode(f.data)
            assert self._writer is not None
            # Every command of the centre is confirmed with its serial.
            self._writer.write(self._frame(Command.CONFIRM, b"", serial=f.serial))
            if unit.type == un.DataType.SYNC_CLOCK:
                self.stats.clock_syncs += 1
            elif unit.type == un.DataType.DUTY_CHECK:
                # Someone at the unit presses the answer key: type 24, bit 5 (查岗应答).
                answer = un.UtdOperation(1 << 5, 1, TimeLabel.of(dt.datetime.now(self.tz)))
                data = un.encode(un.unit(un.DataType.UTD_OPERATION, [answer]))
                self._writer.write(self._frame(Command.SEND, data))
                self.stats.duty_answers += 1

    async def send(self, data: bytes) -> bool:
        """Send data, again every resend_s until confirmed, at most `resends` more times."""
        assert self._writer is not None
        raw = self._frame(Command.SEND, data)
        serial = self.serial
        started = time.monotonic()
        self.stats.sent += 1
        for attempt in range(self.resends + 1):
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._waiting[serial] = fut
            if attempt:
                self.stats.resent += 1
            self._writer.write(raw)
            await self._writer.drain()
            try:
                answer = await asyncio.wait_for(fut, self.resend_s)
            except TimeoutError:
                continue
            finally:
                self._waiting.pop(serial, None)
            if answer == Command.CONFIRM:
                self.stats.confirmed += 1
                self.stats.confirm_s.append(time.monotonic() - started)
                return True
            self.stats.denied += 1
            return False
        self.stats.unconfirmed += 1
        return False

    async def close(self) -> None:
        """End the link."""
        if self._writer is not None:
            self._writer.close()
        if getattr(self, "_listener", None) is not None:
            self._listener.cancel()


def heartbeat_unit(at: dt.datetime) -> un.DataUnit:
    """The UTD's own status, all well (type 21, bit 0: monitoring)."""
    return un.unit(un.DataType.UTD_STATUS, [un.UtdStatus(0x01, TimeLabel.of(at))])


async def run_utd(
    utd: SimUtd,
    events: Sequence[ScheduledEvent],
    onset_s: float,
    heartbeat_s: float,
    duration_s: float,
) -> None:
    """Register, then heartbeats and the scenario's events until duration_s."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await utd.send(b"")  # the registration most UTDs send first: an empty data unit
    due = sorted(((onset_s + e.at_s, e) for e in events), key=lambda x: x[0])
    next_beat = heartbeat_s
    while True:
        now_s = loop.time() - t0
        if now_s >= duration_s:
            return
        if due and due[0][0] <= now_s:
            _, e = due.pop(0)
            await utd.send(un.encode(event_unit(e, dt.datetime.now(utd.tz))))
            continue
        if now_s >= next_beat:
            await utd.send(un.encode(heartbeat_unit(dt.datetime.now(utd.tz))))
            next_beat += heartbeat_s
            continue
        wake = min([next_beat, duration_s, *(d for d, _ in due[:1])])
        await asyncio.sleep(max(0.0, wake - now_s))


async def run_fleet(
    host: str,
    port: int,
    addresses: Sequence[int],
    events_of: Mapping[int, Sequence[ScheduledEvent]],
    *,
    onset_s: float = 5.0,
    heartbeat_s: float = 30.0,
    duration_s: float = 60.0,
    resend_s: float = 10.0,
    timezone: str = "Asia/Shanghai",
) -> UtdStats:
    """Every address as a UTD for duration_s; `events_of[address]`: its scenario's events."""
    stats = UtdStats()
    tz = ZoneInfo(timezone)
    utds = [SimUtd(a, stats, tz, resend_s=resend_s) for a in addresses]
    await asyncio.gather(*(u.connect(host, port) for u in utds))
    try:
        await asyncio.gather(
            *(
                run_utd(u, events_of.get(a, ()), onset_s, heartbeat_s, duration_s)
                for u, a in zip(utds, addresses, strict=True)
            )
        )
    finally:
        await asyncio.gather(*(u.close() for u in utds))
    return stats
