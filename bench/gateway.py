"""`firesentry bench --gateway`: the GB/T 26875.3 gateway under load.

On private services, with the engine running (ingest commits what the gateway publishes):

- idle connections: `connections` UTDs connect, each registers and is confirmed, all stay idle
  for `idle_s`, then each sends one status frame and must be confirmed again; the gateway's
  memory and CPU are read;
- frames per second, two kinds: status frames (no event: confirmed once the broker has the
  heartbeat) and component feedback frames (an event each: confirmed once ingest has
  committed it), from `streams` connections keeping `window` frames each in flight.

The baseline, measured in the same run on the same client: a bare asyncio server that
confirms every frame at once without reading it (the ceiling of one Python process and this
client on this machine). Ratios are the gateway's figures over the baseline's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import multiprocessing as mp
import socket
import time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from bench.common import write
from bench.e2e import EngineProc, private_services
from devices.gb26875 import frame as fr
from devices.gb26875 import units as un
from devices.gb26875.frame import Command, Frame, TimeLabel
from devices.gb26875.stream import FrameReader

CST = ZoneInfo("Asia/Shanghai")
BASE = 500_000
CENTRE = fr.address(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _register(dsn: str, n: int) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction(), conn.cursor() as cur:
        with cur.copy("COPY units (id, name) FROM STDIN") as cp:
            for i in range(n):
                cp.write_row((f"gu-{i}", f"网关压测单位 {i}"))
        with cur.copy("COPY devices (id, unit_id, type, attributes) FROM STDIN") as cp:
            for i in range(n):
                cp.write_row(
                    (f"gu-{i}-utd", f"gu-{i}", "user_transmission_device",
                     Jsonb({"gb26875_address": str(BASE + i)}))
                )  # fmt: skip


def _status(serial: int, address: bytes) -> bytes:
    t = TimeLabel.of(dt.datetime.now(CST))
    data = un.encode(un.unit(un.DataType.UTD_STATUS, [un.UtdStatus(1, t)]))
    return fr.encode(Frame(serial, Command.SEND, data, t, address, CENTRE))


def _feedback(serial: int, address: bytes, point: int) -> bytes:
    t = TimeLabel.of(dt.datetime.now(CST))
    obj = un.ComponentStatus(1, 1, 86, (1 << 16) | point, 1 | 1 << 6, "压测反馈", t)
    data = un.encode(un.unit(un.DataType.COMPONENT_STATUS, [obj]))
    return fr.encode(Frame(serial, Command.SEND, data, t, address, CENTRE))


class _Link:
    """A UTD's connection, counting confirms by serial."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames = FrameReader()
        self.confirmed = 0
        self.got = asyncio.Event()

    async def pump(self) -> None:
        while chunk := await self.reader.read(65536):
            for f in self.frames.feed(chunk):
                if isinstance(f, Frame) and f.command == Command.CONFIRM:
                    self.confirmed += 1
                    self.got.set()

    async def until(self, n: int, within_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while self.confirmed < n:
            self.got.clear()
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.got.wait(), left)
        return True


async def _open(port: int, n: int) -> list[_Link]:
    links: list[_Link] = []
    for start in range(0, n, 500):
        pairs = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(min(500, n - start)))
        )
        links += [_Link(r, w) for r, w in pairs]
    return links


async def _idle(port: int, n: int, idle_s: float, rss: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    links = await _open(port, n)
    pumps = [asyncio.create_task(link.pump()) for link in links]
    for i, link in enumerate(links):
        link.writer.write(_status(1, fr.address(BASE + i)))
    ok = await asyncio.gather(*(link.until(1, 60) for link in links))
    ready_s = time.perf_counter() - t0
    await asyncio.sleep(idle_s)
    idle_rss = rss()
    for i, link in enumerate(links):
        link.writer.write(_status(2, fr.address(BASE + i)))
    again = await asyncio.gather(*(link.until(2, 60) for link in links))
    for link in links:
        link.writer.close()
    for p in pumps:
        p.cancel()
    return {
        "connections": n,
        "confirmed_first": sum(ok),
        "confirmed_after_idle": sum(again),
        "seconds_to_all_confirmed": round(ready_s, 2),
        "rss_mb_idle": idle_rss,
    }


async def _throughput(
    port: int, streams: int, window: int, seconds: float, kind: str
) -> dict[str, Any]:
    links = await _open(port, streams)
    pumps = [asyncio.create_task(link.pump()) for link in links]
    sent = [0] * streams
    stop_at = asyncio.get_running_loop().time() + seconds

    async def drive(i: int, link: _Link) -> None:
        address = fr.address(BASE + i)
        loop = asyncio.get_running_loop()
        while loop.time() < stop_at:
            while sent[i] - link.confirmed < window:
                sent[i] += 1
                s = sent[i] & 0xFFFF
                raw = _status(s, address) if kind == "status" else _feedback(s, address, sent[i])
                link.writer.write(raw)
            await link.writer.drain()
            link.got.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.got.wait(), 1.0)

    t0 = time.perf_counter()
    await asyncio.gather(*(drive(i, link) for i, link in enumerate(links)))
    elapsed = time.perf_counter() - t0
    confirmed = sum(link.confirmed for link in links)
    # What is still in flight is confirmed within a few seconds, or it is a loss.
    await asyncio.gather(*(link.until(sent[i], 30) for i, link in enumerate(links)))
    late = sum(link.confirmed for link in links) - confirmed
    for link in links:
        link.writer.close()
    for p in pumps:
        p.cancel()
    return {
        "kind": kind,
        "streams": streams,
        "window": window,
        "frames_confirmed_per_s": round(confirmed / elapsed),
        "sent": sum(sent),
        "confirmed_in_the_end": confirmed + late,
    }


def _baseline_server(port: int) -> None:
    """Confirm every frame at once, reading nothing but its serial: the ceiling."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader()
        while chunk := await reader.read(65536):
            for f in frames.feed(chunk):
                if isinstance(f, Frame):
                    writer.write(fr.encode(f.reply(Command.CONFIRM, f.time)))

    async def main() -> None:
        server = await asyncio.start_server(session, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _wait_port(port: int, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def gateway_bench(
    connections: int = 10_000, idle_s: float = 10.0, seconds: float = 15.0, quick: bool = False
) -> dict[str, Any]:
    """Run the measurements; write bench/results/gateway-*.json."""
    if quick:
        connections, idle_s, seconds = 1_000, 3.0, 5.0
    streams, window = 100, 20
    result: dict[str, Any] = {"connections": connections, "idle_s": idle_s, "seconds": seconds}
    with private_services() as (ep, root):
        _register(ep.dsn(), connections)
        engine = EngineProc(ep, "bench-gw-ingest", root, None)
        port = _free_port()
        gw = EngineProc(
            ep,
            "bench-gw",
            root,
            None,
            command=("gateway", "gb26875", "--listen", f"127.0.0.1:{port}"),
        )
        try:
            _wait_port(port)
            time.sleep(2.0)  # ingest connected and subscribed

            def rss() -> float:
                return round(gw.rss_mb()[0], 1)

            cpu0 = gw.cpu_s()
            result["idle"] = asyncio.run(_idle(port, connections, idle_s, rss))
            result["status"] = asyncio.run(_throughput(port, streams, window, seconds, "status"))
            result["events"] = asyncio.run(_throughput(port, streams, window, seconds, "event"))
            result["gateway_cpu_s"] = round(gw.cpu_s() - cpu0, 1)
            result["gateway_rss_peak_mb"] = round(gw.rss_mb()[1], 1)
        finally:
            gw.stop()
            engine.stop()
    bport = _free_port()
    base = mp.get_context("spawn").Process(target=_baseline_server, args=(bport,), daemon=True)
    base.start()
    try:
        _wait_port(bport)
        result["baseline_status"] = asyncio.run(
            _throughput(bport, streams, window, seconds, "status")
        )
    finally:
        base.terminate()
        base.join(10)
    b = result["baseline_status"]["frames_confirmed_per_s"]
    result["ratio_status_to_baseline"] = round(result["status"]["frames_confirmed_per_s"] / b, 3)
    result["ratio_events_to_baseline"] = round(result["events"]["frames_confirmed_per_s"] / b, 3)
    path = write("gateway-quick" if quick else "gateway", result)
    print(f"gateway benchmark: {result}\nwritten to {path}")
    return result
