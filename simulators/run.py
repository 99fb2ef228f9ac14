"""Publish a simulated fleet to an MQTT broker at a given rate: asyncio + aiomqtt, 1..P processes.

The fleet's messages are scheduled round-robin: process p owns every P-th device and sends its
share of the rate, slot j at `t0 + (j + p/P) / r_p`, so each device speaks every
`devices / rate` seconds. Every message is published with QoS 1 and counted once the broker
has acknowledged it; the summary says what was sent per kind.

Connections: one per device (its own login and will message, as real devices do), or one per
process publishing on every device's topic (`shared_connection`, for anonymous brokers and
benchmarks: 10,000 connections are too many for one process). In shared mode the devices of
the offline_and_back scenario still get a connection of their own, since a will belongs to a
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import multiprocessing as mp
import os
import queue
import resource
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulators.fleet import Assignment, FleetSpec, Generator, Kind, Message
from simulators.noise import device_seed
from simulators.scenarios import Scenario, parse

# Per-process counters; the first five are the kinds of message sent.
COUNTERS = (
    "telemetry",  # single readings (heartbeats included)
    "readings",  # store-and-forward readings[] batches
    "events",
    "status",
    "malformed",
    "values",  # metric values in telemetry and batches: the telemetry rows they should make
    "batched",  # readings inside the batches
    "failed",  # publishes that raised (connection lost, timeout)
    "refused",  # acknowledged with a failure reason code (e.g. 0x87 not authorized)
    "dropped",  # connections dropped on purpose (offline_and_back): each makes a will message
)
SENT_KINDS = COUNTERS[:5]
_INDEX = {name: i for i, name in enumerate(COUNTERS)}
PER_DEVICE_DEFAULT_MAX = 200


class SimError(RuntimeError):
    """The simulation could not run as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class SimOptions:
    """What to simulate and where to send it."""

    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "fs/v1"
    devices: int = 100
    rate: float = 50.0  # messages per second for the whole fleet
    duration_s: float | None = 10.0  # None: until stopped
    seed: int = 1
    id_prefix: str = "sim"
    scenarios: tuple[str, ...] = ()
    faulty: str = "1"  # per scenario: a count, or a share such as "10%"
    fault_after_s: float = 5.0
    processes: int = 1
    shared_connection: bool = False
    credentials: dict[str, tuple[str, str]] | None = None  # device id -> (username, password)
    depths: dict[str, float] | None = None  # tank depths known to the registry
    # Publishes in flight per process. paho walks its in-flight list on every ack, so a big
    # window costs more than it gains; on loopback 32-64 keep the link busy.
    window: int = 64
    client_prefix: str = "fs-sim"


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run sent, per kind, and how fast."""

    counts: dict[str, int]
    elapsed_s: float
    devices: int
    processes: int
    connections: int
    target_rate: float
    faulty: dict[str, list[str]] = field(default_factory=dict)  # scenario -> device ids

    @property
    def messages(self) -> int:
        """Messages the broker acknowledged, of every kind."""
        return sum(self.counts[k] for k in SENT_KINDS)

    @property
    def rate(self) -> float:
        """Achieved messages per second."""
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON data."""
        return {
            "counts": dict(self.counts),
            "messages": self.messages,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate": round(self.rate, 1),
            "target_rate": self.target_rate,
            "devices": self.devices,
            "processes": self.processes,
            "connections": self.connections,
            "faulty": self.faulty,
        }


def parse_faulty(text: str, eligible: int) -> int:
    """How many of `eligible` devices a `--faulty` value (a count, or a share like 10%) means."""
    text = text.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100.0
            if not 0.0 <= share <= 1.0:
                raise ValueError
            return min(eligible, max(1 if share > 0 else 0, round(share * eligible)))
        count = int(text)
        if count < 0:
            raise ValueError
    except ValueError:
        raise SimError(f"--faulty {text!r}: give a count (5) or a share (10%)") from None
    return min(count, eligible)


def pick_faulty(
    spec: FleetSpec, scenarios: tuple[str, ...], faulty: str, seed: int
) -> dict[int, Scenario]:
    """Which devices (by index) get which scenario: for each scenario in turn, `faulty` of the
    devices of its types not taken yet, chosen reproducibly from the seed."""
    out: dict[int, Scenario] = {}
    for name in scenarios:
        try:
            sc = parse(name)
        except ValueError as exc:
            raise SimError(str(exc)) from None
        if sc.name == "none":
            continue
        eligible = [i for i in range(spec.size) if spec.device_type(i) in sc.types and i not in out]
        eligible.sort(key=lambda i: device_seed(seed, f"{sc.name}:{spec.device_id(i)}"))
        for i in eligible[: parse_faulty(faulty, len(eligible))]:
            out[i] = sc
    return out


# --- counters shared with the parent process ---


class _Counters:
    """This process's slice of the counter array (an mp.Array, or a plain list in-process)."""

    def __init__(self, array: MutableSequence[int], share: int) -> None:
        self.array = array
        self.base = share * len(COUNTERS)

    def add(self, name: str, n: int = 1) -> None:
        self.array[self.base + _INDEX[name]] += n


def _totals(array: MutableSequence[int], shares: int) -> dict[str, int]:
    n = len(COUNTERS)
    return {name: sum(array[p * n + i] for p in range(shares)) for i, name in enumerate(COUNTERS)}


# --- connections ---


class _Client(aiomqtt.Client):
    """aiomqtt's client with a publish that does not wait: the ack arrives as a callback.

    aiomqtt's own `publish` awaits each ack and scans every pending call per publish (O(window)),
    which caps one process at a few thousand messages per second; it also drops the PUBACK's
    reason code. This keeps aiomqtt's connection handling and asyncio integration and hands
    paho's publish a callback per message id instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: dict[int, Callable[[str], None]] = {}

    def publish_nowait(
        self, topic: str, payload: bytes, retain: bool, done: Callable[[str], None]
    ) -> None:
        """Publish with QoS 1; done(outcome) runs once: "ok" when the broker acknowledged,
        "refused" for a failure reason code (0x87 not authorized), "failed" when the connection
        was lost first."""
        info = self._client.publish(topic, payload, 1, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        # A QoS 1 ack arrives through the event loop, never inside publish(): register now.
        self._acks[info.mid] = done

    def _on_publish(
        self,
        client: Any,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        done = self._acks.pop(mid, None)
        if done is None:
            super()._on_publish(client, userdata, mid, reason_code, properties)
        else:
            done("refused" if reason_code.is_failure else "ok")

    def _on_disconnect(self, *args: Any, **kwargs: Any) -> None:
        # Messages still unacknowledged are lost with this connection (it is never resumed).
        pending, self._acks = self._acks, {}
        for done in pending.values():
            done("failed")
        super()._on_disconnect(*args, **kwargs)


def _allow_sockets(n: int) -> None:
    """Raise this process's open-file limit (often 1,024) to fit n connections, if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        top = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if top > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        if top < want:
            raise SimError(
                f"{n} connections need {want} open files but this process may open {top}; "
                "use more --processes or --shared-connection"
            )


class _Links:
    """The process's MQTT connections: per device, or one shared plus the few that need a will."""

    def __init__(self, opts: SimOptions, gen: Generator, own: set[int]) -> None:
        self.opts = opts
        self.gen = gen
        self.own = own
        self.clients: dict[int, _Client] = {}
        self.shared: _Client | None = None
        self.closed: list[_Client] = []
        self._tag = uuid.uuid4().hex[:6]

    def _device_client(self, dev: int) -> _Client:
        device_id = self.gen.ids[dev]
        username = password = None
        if self.opts.credentials is not None:
            login = self.opts.credentials.get(device_id)
            if login is None:
                raise SimError(
                    f"no credentials for device {device_id}; run with --create-fleet, or give "
                    "--credentials with a row for it"
                )
            username, password = login
        return _Client(
            self.opts.host,
            self.opts.port,
            username=username,
            password=password,
            identifier=f"{self.opts.client_prefix}-{device_id}",
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self.gen.topics[dev][2], b"offline", qos=1, retain=True),
            keepalive=30,
            timeout=30,
        )

    async def _enter(self, client: _Client, what: str, attempts: int = 8) -> _Client:
        # A broker just restarted with new passwords may still be coming up for a moment.
        for attempt in range(attempts):
            try:
                await client.__aenter__()
                return client
            except aiomqtt.MqttError as exc:
                if attempt == attempts - 1:
                    raise SimError(
                        f"{what}: cannot connect to the broker at {self.opts.host}:"
                        f"{self.opts.port} ({exc})"
                    ) from None
                await asyncio.sleep(0.25 * (attempt + 1))
        raise AssertionError("unreachable")

    async def open(self) -> list[int]:
        """Connect; return the devices with a connection of their own (they announce online)."""
        _allow_sockets(len(self.gen.ids) if not self.opts.shared_connection else len(self.own))
        if self.opts.shared_connection:
            client = _Client(
                self.opts.host,
                self.opts.port,
                identifier=f"{self.opts.client_prefix}-{os.getpid()}-{self._tag}",
                protocol=aiomqtt.ProtocolVersion.V5,
                max_inflight_messages=self.opts.window,
                timeout=60,
            )
            self.shared = await self._enter(client, "shared connection")
            devices = sorted(self.own)
        else:
            devices = list(range(len(self.gen.ids)))
        limit = asyncio.Semaphore(32)

        async def connect(dev: int) -> None:
            async with limit:
                client = self._device_client(dev)
                self.clients[dev] = await self._enter(client, f"device {self.gen.ids[dev]}")

        await asyncio.gather(*(connect(d) for d in devices))
        return devices

    @property
    def count(self) -> int:
        """Open connections."""
        return len(self.clients) + (self.shared is not None)

    def client(self, dev: int) -> _Client:
        """The connection device `dev` publishes on."""
        c = self.clients.get(dev)
        if c is not None:
            return c
        if self.shared is None:
            raise SimError(f"device {self.gen.ids[dev]} has no connection")
        return self.shared

    async def drop(self, dev: int) -> None:
        """Lose the device's connection without DISCONNECT, so that the broker sends its will."""
        c = self.clients.pop(dev)
        self.closed.append(c)
        # aiomqtt has no call for an abrupt loss: shut the socket under paho. The broker sees the
        # connection end without DISCONNECT and publishes the will.
        sock = c._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # paho notices on its next read and aiomqtt records the loss; collect it (else asyncio
        # logs a never-retrieved exception).
        with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(c._disconnected), 10)
        with contextlib.suppress(aiomqtt.MqttError):
            await c.__aexit__(None, None, None)

    async def reconnect(self, dev: int) -> None:
        """A new connection for the device (the next message announces it online)."""
        client = self._device_client(dev)
        self.clients[dev] = await self._enter(client, f"device {self.gen.ids[dev]}")

    async def close(self) -> None:
        """Disconnect cleanly (no will messages)."""
        conns = [*self.clients.values()]
        if self.shared is not None:
            conns.append(self.shared)
        self.closed.extend(conns)
        self.clients, self.shared = {}, None

        async def bye(c: _Client) -> None:
            with contextlib.suppress(aiomqtt.MqttError):
                await c.__aexit__(None, None, None)

        await asyncio.gather(*(bye(c) for c in conns))


class _Sender:
    """Publishes messages with up to `window` unacknowledged; counts each once acknowledged."""

    def __init__(self, links: _Links, counters: _Counters, window: int) -> None:
        self.links = links
        self.counters = counters
        self.window = window
        self.inflight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def send(self, m: Message) -> None:
        """Publish m (or carry out a link instruction); waits only while the window is full."""
        if m.kind is Kind.DROP:
            await self.drain()  # what the device sent before must not be lost with the link
            await self.links.drop(m.dev)
            self.counters.add("dropped")
            return
        if m.kind is Kind.RECONNECT:
            await self.links.reconnect(m.dev)
            return
        while self.inflight >= self.window:
            self._room.clear()
            await self._room.wait()
        try:
            self.links.client(m.dev).publish_nowait(
                m.topic, m.payload, m.retain, functools.partial(self._acked, m)
            )
        except (aiomqtt.MqttError, SimError):
            self.counters.add("failed")
            return
        self.inflight += 1
        self._idle.clear()

    def _acked(self, m: Message, outcome: str) -> None:
        self.inflight -= 1
        if outcome == "ok":
            self.counters.add(m.kind.value)
            if m.values:
                self.counters.add("values", m.values)
            if m.readings:
                self.counters.add("batched", m.readings)
        else:
            self.counters.add(outcome)
        if self.inflight < self.window:
            self._room.set()
        if self.inflight == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until every publish so far is acknowledged (or failed)."""
        await self._idle.wait()


# --- one process's share of the fleet ---


class _Sync:
    """How a share learns when to start and when to stop (in-process flavour)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    async def start_time(self) -> float:
        return time.time() + 0.05

    def stopped(self) -> bool:
        return self.stop.is_set()


class _ProcSync(_Sync):
    """The multi-process flavour: report ready, wait for the common start time."""

    def __init__(self, q: Any, go: Any, t0: Any, stop: Any, share: int) -> None:
        self.q, self.go, self.t0, self.mp_stop, self.share = q, go, t0, stop, share

    async def start_time(self) -> float:
        self.q.put(("ready", self.share, None))
        await asyncio.get_running_loop().run_in_executor(None, self.go.wait)
        return float(self.t0.value)

    def stopped(self) -> bool:
        return bool(self.mp_stop.is_set())


def _share_devices(opts: SimOptions, share: int) -> list[int]:
    return list(range(share, opts.devices, opts.processes))


async def _run_share(
    opts: SimOptions,
    share: int,
    counters: _Counters,
    sync: _Sync,
    tick: Callable[[], None] | None = None,
) -> tuple[float, int]:
    """Connect this share's devices, publish until the duration is over; return (elapsed,
    connections)."""
    spec = FleetSpec(opts.devices, opts.id_prefix)
    mine = _share_devices(opts, share)
    if not mine:
        await sync.start_time()
        return 0.0, 0
    faulty = pick_faulty(spec, opts.scenarios, opts.faulty, opts.seed)
    local = {g: k for k, g in enumerate(mine)}
    interval = opts.devices / opts.rate
    gen = Generator(
        [spec.device_id(i) for i in mine],
        [spec.device_type(i) for i in mine],
        seed=opts.seed,
        prefix=opts.prefix,
        interval_s=interval,
        depths=opts.depths,
    )
    own = {local[g] for g, sc in faulty.items() if g in local and sc.link == "offline"}
    links = _Links(opts, gen, own)
    sender = _Sender(links, counters, opts.window)
    try:
        for dev in await links.open():
            await sender.send(gen.hello(dev))
        await sender.drain()
        connections = links.count
        t0 = await sync.start_time()
        gen.assignments = {
            local[g]: Assignment(sc, t0 + opts.fault_after_s)
            for g, sc in faulty.items()
            if g in local
        }
        n = len(mine)
        r = opts.rate * n / opts.devices
        phase = share / opts.processes
        end_j = math.inf if opts.duration_s is None else math.ceil(opts.duration_s * r)
        j = 0
        while j < end_j and not sync.stopped():
            now = time.time()
            due = min(end_j, math.floor((now - t0) * r - phase) + 1)
            if due > j:
                hi = int(min(due, j + 4096))
                js = np.arange(j, hi, dtype=np.int64)
                times = t0 + (js + phase).astype(np.float64) / r
                for m in gen.slots(js % n, times):
                    await sender.send(m)
                j = hi
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(min(0.05, max(0.001, t0 + (j + phase) / r - now)))
            if tick is not None:
                tick()
        await sender.drain()
        elapsed = time.time() - t0
    finally:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sender.drain(), 30)
        await links.close()
    return elapsed, connections


def _child(
    opts: SimOptions, share: int, array: Any, q: Any, go: Any, t0: Any, stop: Any
) -> None:  # pragma: no cover (runs in a spawned process; its results are checked)
    """Entry point of a spawned process: run one share, report back on q."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent tells us to stop
    try:
        elapsed, conns = asyncio.run(
            _run_share(opts, share, _Counters(array, share), _ProcSync(q, go, t0, stop, share))
        )
        q.put(("done", share, (elapsed, conns)))
    except BaseException as exc:
        q.put(("error", share, f"{type(exc).__name__}: {exc}"))


# --- progress and summary ---


class _Progress:
    def __init__(self, opts: SimOptions, console: Console | None, enabled: bool) -> None:
        total = None if opts.duration_s is None else opts.rate * opts.duration_s
        self.progress = Progress(
            TextColumn("[bold]simulate[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9.0f} msg/s"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task("simulate", total=total, rate=0.0)
        self.t0: float | None = None

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, counts: dict[str, int]) -> None:
        sent = sum(counts[k] for k in SENT_KINDS)
        now = time.monotonic()
        if self.t0 is None and sent:
            self.t0 = now
        rate = sent / (now - self.t0) if self.t0 is not None and now > self.t0 else 0.0
        self.progress.update(self.task, completed=sent, rate=rate)


def print_summary(s: Summary, console: Console | None = None) -> None:
    """A table of what was sent per kind, and the achieved rate."""
    console = console or Console()
    c = s.counts
    t = Table(title=f"sent by {s.devices} devices in {s.elapsed_s:.1f} s", title_justify="left")
    t.add_column("kind")
    t.add_column("messages", justify="right")
    t.add_column("note")
    t.add_row("telemetry", f"{c['telemetry']:,}", f"{c['values']:,} metric values in all")
    t.add_row("readings", f"{c['readings']:,}", f"readings[] batches of {c['batched']:,} readings")
    t.add_row("events", f"{c['events']:,}", "")
    t.add_row("status", f"{c['status']:,}", f"+ {c['dropped']:,} will messages (dropped links)")
    t.add_row("malformed", f"{c['malformed']:,}", "expect as many rejected_messages rows")
    t.add_row("total", f"{s.messages:,}", f"{s.rate:,.0f} msg/s (asked {s.target_rate:,.0f})")
    console.print(t)
    console.print(
        f"{s.processes} process(es), {s.connections} connection(s); "
        f"failed {c['failed']:,}, refused by the broker {c['refused']:,}"
    )
    for name, ids in s.faulty.items():
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        console.print(f"scenario {name}: {shown}")
    if s.elapsed_s > 1 and s.rate < 0.95 * s.target_rate:
        hint = "more --processes"
        if s.connections >= s.devices:
            hint += ", or --shared-connection if the broker takes anonymous clients"
        console.print(
            f"[yellow]fell behind: {s.rate:,.0f} of {s.target_rate:,.0f} msg/s; try {hint}[/]"
        )


# --- entry point ---


def _faulty_ids(opts: SimOptions) -> dict[str, list[str]]:
    spec = FleetSpec(opts.devices, opts.id_prefix)
    out: dict[str, list[str]] = {}
    for i, sc in sorted(pick_faulty(spec, opts.scenarios, opts.faulty, opts.seed).items()):
        out.setdefault(sc.name, []).append(spec.device_id(i))
    return out


def check(opts: SimOptions) -> None:
    """Refuse options that cannot work, saying which and why."""
    if opts.devices < 1:
        raise SimError("--devices must be at least 1")
    if opts.rate <= 0:
        raise SimError("--rate must be positive")
    if opts.rate > 1000 * opts.devices:
        raise SimError(
            f"--rate {opts.rate:g} is more than 1,000 messages per second per device; timestamps "
            "are in milliseconds, so readings would collide (use more --devices)"
        )
    if not 1 <= opts.processes <= opts.devices:
        raise SimError("--processes must be between 1 and the number of devices")
    if opts.duration_s is not None and opts.duration_s <= 0:
        raise SimError("--duration must be positive")
    if opts.shared_connection and opts.credentials is not None:
        raise SimError(
            "--shared-connection publishes every device's topic on one anonymous connection, but "
            "this broker needs each device to log in: drop --shared-connection"
        )
    pick_faulty(FleetSpec(opts.devices, opts.id_prefix), opts.scenarios, opts.faulty, opts.seed)


def simulate(
    opts: SimOptions,
    *,
    progress: bool = True,
    console: Console | None = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Run the simulation and return what was sent (raises SimError when it cannot run)."""
    check(opts)
    stop = stop or threading.Event()
    with _Progress(opts, console, progress) as prog:
        if opts.processes == 1:
            elapsed, conns, counts = _in_process(opts, stop, prog)
        else:
            elapsed, conns, counts = _processes(opts, stop, prog)
        prog.update(counts)
    return Summary(
        counts, elapsed, opts.devices, opts.processes, conns, opts.rate, _faulty_ids(opts)
    )


def _in_process(
    opts: SimOptions, stop: threading.Event, prog: _Progress
) -> tuple[float, int, dict[str, int]]:
    array = [0] * len(COUNTERS)
    last = [0.0]

    def tick() -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2:
            last[0] = now
            prog.update(_totals(array, 1))

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        handled = threading.current_thread() is threading.main_thread()
        if handled:
            loop.add_signal_handler(signal.SIGINT, stop.set)
        try:
            return await _run_share(opts, 0, _Counters(array, 0), _Sync(stop), tick)
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGINT)

    elapsed, conns = asyncio.run(main())
    return elapsed, conns, _totals(array, 1)


def _processes(
    opts: SimOptions, stop: threading.Event, prog: _Progress
) -> tuple[float, int, dict[str, int]]:
    ctx = mp.get_context("spawn")  # never fork a process that may hold threads and sockets
    shares = opts.processes
    array = ctx.Array("q", shares * len(COUNTERS), lock=False)
    q = ctx.Queue()
    go, mp_stop = ctx.Event(), ctx.Event()
    t0 = ctx.Value("d", 0.0, lock=False)
    procs = [
        ctx.Process(target=_child, args=(opts, p, array, q, go, t0, mp_stop), name=f"simulate-{p}")
        for p in range(shares)
    ]
    for p in procs:
        p.start()
    done: dict[int, tuple[float, int]] = {}
    errors: list[str] = []
    ready = 0
    try:
        while len(done) + len(errors) < shares:
            if stop.is_set():
                mp_stop.set()
            try:
                kind, share, data = q.get(timeout=0.2)
            except queue.Empty:
                prog.update(_totals(array, shares))
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead and not errors:
                    errors.append(f"{dead[0].name} exited with code {dead[0].exitcode}")
                continue
            except KeyboardInterrupt:
                stop.set()
                continue
            if kind == "ready":
                ready += 1
                if ready == shares:
                    t0.value = time.time() + 0.1
                    go.set()
            elif kind == "done":
                done[share] = data
            else:
                errors.append(f"process {share}: {data}")
                mp_stop.set()
                go.set()
    finally:
        mp_stop.set()
        go.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
    if errors:
        raise SimError("; ".join(errors))
    elapsed = max((e for e, _ in done.values()), default=0.0)
    conns = sum(c for _, c in done.values())
    return elapsed, conns, _totals(array, shares)
