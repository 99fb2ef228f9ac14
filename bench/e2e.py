"""`firesentry bench`: limits, a naive baseline and firesentry, side by side in one run.

Messages are published into the broker first (persistent sessions queue them), then each
consumer's drain is timed, so the Python load generator is not what is measured; its own
rate is reported. Latency is measured live, publishing at half the sustained rate.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.common import RESULTS, children_of, write
from bench.rawpub import RawPublisher
from firesentry.config import Settings
from firesentry.embedded import EmbeddedServices, Endpoints
from simulators.services.webhook import Received, WebhookReceiver
from store.migrate import migrate
from store.partitions import PartitionManager, day_of_ms
from store.telemetry import telemetry_copy_buffer

PREFIX = "fs/v1"
METRICS = {"residual_current_ma": 41.5, "temp_c_1": 38.2, "voltage_v_a": 221.4}
SECRET = b"bench-secret"


@dataclass(frozen=True)
class Plan:
    """How big each part of the run is."""

    fleets: tuple[int, ...]
    single_messages: int
    batched_messages: int
    batch_readings: int
    naive_seconds: float
    latency_seconds: float


# Batched runs span several batches (batch_max is 2,000 messages): a backlog that one commit
# takes whole cannot be timed from the first commit.
QUICK = Plan((1_000,), 20_000, 6_000, 20, 5.0, 8.0)
FULL = Plan((1_000, 10_000), 150_000, 10_000, 20, 15.0, 20.0)


# --- load generation --------------------------------------------------------------------------


def _payloads(
    n: int, devices: int, per_message: int, start_ms: int, offset: int
) -> list[tuple[str, bytes]]:
    out = []
    for k in range(offset, offset + n):
        dev = f"em-{k % devices + 1}"
        ts = start_ms + k  # unique per device and message
        if per_message == 1:
            body: dict[str, Any] = {"ts": ts, "seq": k, "metrics": METRICS}
        else:
            first = start_ms + k * per_message
            body = {"readings": [{"ts": first + j, "metrics": METRICS} for j in range(per_message)]}
        out.append((f"{PREFIX}/{dev}/telemetry", msgspec.json.encode(body)))
    return out


def _publish_worker(args: tuple[str, int, int, int, int, int, int]) -> float:
    host, port, n, devices, per_message, start_ms, offset = args
    msgs = _payloads(n, devices, per_message, start_ms, offset)
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    t = time.perf_counter()
    # Packet ids wrap at 65535: keep fewer than that unacknowledged at any time.
    for k in range(0, len(msgs), 20_000):
        infos = [c.publish(topic, payload, qos=1) for topic, payload in msgs[k : k + 20_000]]
        for info in infos:
            info.wait_for_publish(120)
    elapsed = time.perf_counter() - t
    c.disconnect()
    c.loop_stop()
    return elapsed


def publish(
    ep: Endpoints, n: int, devices: int, per_message: int, start_ms: int, processes: int = 2
) -> float:
    """Publish n messages with several processes; return the publishers' aggregate msgs/s."""
    share = n // processes
    jobs = [
        (
            ep.mqtt_host,
            ep.mqtt_port,
            share if i < processes - 1 else n - share * i,
            devices,
            per_message,
            start_ms,
            i * share,
        )
        for i in range(processes)
    ]
    with mp.get_context("spawn").Pool(processes) as pool:
        times = pool.map(_publish_worker, jobs)
    return n / max(times)


def _session(ep: Endpoints, client_id: str, expiry_s: int, topic: str | None) -> None:
    """Connect once with this session expiry (clean start when 0), subscribe to `topic` if
    given, and leave."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    done = threading.Event()
    if topic is None:
        c.on_connect = lambda *a: done.set()
    else:
        c.on_subscribe = lambda *a: done.set()
    c.connect(ep.mqtt_host, ep.mqtt_port, clean_start=expiry_s == 0, properties=props)
    c.loop_start()
    if topic is not None:
        c.subscribe(topic, qos=1)
    done.wait(10)
    c.disconnect()
    c.loop_stop()


def open_session(ep: Endpoints, client_id: str) -> None:
    """Create a persistent MQTT 5 session subscribed to telemetry, then leave it queueing."""
    _session(ep, client_id, 3600, f"{PREFIX}/+/telemetry")


def drop_session(ep: Endpoints, client_id: str) -> None:
    """End a persistent session for good (clean start, expiry 0), so the broker stops queueing
    for it: sessions left behind make every later publish cost more, and a later
    measurement slower than an earlier one."""
    _session(ep, client_id, 0, None)


# --- consumers --------------------------------------------------------------------------------


def drain_broker_only(ep: Endpoints, client_id: str, expected: int) -> float:
    """A subscriber that does nothing with messages: the broker's delivery limit, msgs/s."""
    got = 0
    first: list[float] = []
    done = threading.Event()

    def on_message(c: Any, u: Any, m: Any) -> None:
        nonlocal got
        if not first:
            first.append(time.perf_counter())
        got += 1
        if got >= expected:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 65535
    t = time.perf_counter()
    c.connect(ep.mqtt_host, ep.mqtt_port, clean_start=False, properties=props)
    c.loop_start()
    done.wait(300)
    elapsed = time.perf_counter() - (first[0] if first else t)
    c.disconnect()
    c.loop_stop()
    return got / elapsed


def drain_c_subscriber(ep: Endpoints, client_id: str, expected: int) -> float:
    """mosquitto_sub (C, libmosquitto) draining the prefilled session: the broker's delivery
    limit without Python in the way, msgs/s (its start-up is included: a lower bound)."""
    t = time.perf_counter()
    subprocess.run(
        ["mosquitto_sub", "-V", "5", "-h", ep.mqtt_host, "-p", str(ep.mqtt_port), "-i", client_id,
         "-c", "-x", "3600", "-q", "1", "-C", str(expected), "-t", f"{PREFIX}/+/telemetry",
         "-D", "connect", "receive-maximum", "65535", "-W", "300"],
        stdout=subprocess.DEVNULL,
        check=True,
    )  # fmt: skip
    return expected / (time.perf_counter() - t)


def drain_naive(ep: Endpoints, client_id: str, dsn: str, limit_s: float) -> tuple[float, float]:
    """The obvious subscriber: paho callback, json.loads, one INSERT per reading, autocommit."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS naive (ts timestamptz, device text, metric text,"
        " value double precision)"
    )
    msgs = rows = 0
    first: list[float] = []

    def on_message(c: Any, u: Any, m: Any) -> None:
        nonlocal msgs, rows
        if not first:
            first.append(time.perf_counter())
        body = json.loads(m.payload)
        device = m.topic.split("/")[2]
        for r in body.get("readings") or [body]:
            for name, value in r["metrics"].items():
                conn.execute(
                    "INSERT INTO naive VALUES (to_timestamp(%s / 1000.0), %s, %s, %s)",
                    (r["ts"], device, name, value),
                )
                rows += 1
        msgs += 1

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect(ep.mqtt_host, ep.mqtt_port, clean_start=False, properties=props)
    c.loop_start()
    deadline = time.perf_counter() + limit_s + 5
    while time.perf_counter() < deadline and not (
        first and time.perf_counter() - first[0] > limit_s
    ):
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    elapsed = time.perf_counter() - first[0] if first else limit_s
    conn.close()
    return msgs / elapsed, rows / elapsed


def copy_limit(dsn: str, rows: int, devices: int) -> float:
    """PostgreSQL's binary COPY rate for telemetry rows (no dedup), rows/s."""
    now = int(time.time() * 1000)
    dev = (np.arange(rows) % devices + 1).astype(np.int32)
    met = np.full(rows, 3, np.int16)
    ts = (now - 3_600_000 + np.arange(rows)).astype(np.int64)
    val = np.full(rows, 41.5)
    buf = telemetry_copy_buffer(dev, met, ts, val)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE copy_limit (ts timestamptz, device_num integer,"
            " metric_id smallint, value double precision)"
        )
        t = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY copy_limit FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(buf)
        return rows / (time.perf_counter() - t)


# --- firesentry -------------------------------------------------------------------------------


class EngineProc:
    """`firesentry run` in its own process, so its CPU and memory can be read."""

    def __init__(
        self,
        ep: Endpoints,
        client_id: str,
        workdir: Path,
        webhook: str | None,
        engine_path: str | None = None,
        log_level: str = "warning",
        command: tuple[str, ...] = ("run",),
    ) -> None:
        # `command`: another firesentry command on the same services (the GB/T 26875.3
        # gateway's benchmark runs `gateway gb26875` this way).
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIRESENTRY_")}
        if engine_path:  # another checkout's engine (a baseline), measured by this harness
            env["PYTHONPATH"] = engine_path
        env.update(
            {
                "FIRESENTRY_EMBEDDED__ENABLED": "false",
                "FIRESENTRY_EMBEDDED__DIR": str(workdir / "state"),
                "FIRESENTRY_MQTT__HOST": ep.mqtt_host,
                "FIRESENTRY_MQTT__PORT": str(ep.mqtt_port),
                "FIRESENTRY_MQTT__CLIENT_ID": client_id,
                "FIRESENTRY_DATABASE__HOST": ep.db_host,
                "FIRESENTRY_DATABASE__PORT": str(ep.db_port),
                "FIRESENTRY_DATABASE__DBNAME": ep.db_name,
                "FIRESENTRY_DATABASE__USER": ep.db_user,
                "FIRESENTRY_DATABASE__PASSWORD": ep.db_password,
                "FIRESENTRY_LOG__LEVEL": log_level,
                "FIRESENTRY_LOG__FORMAT": "json",
            }
        )
        if "api" in Settings.model_fields:  # the benchmark measures ingest, not the API server
            env["FIRESENTRY_API__ENABLED"] = "false"
        if webhook:
            env["FIRESENTRY_NOTIFY__WEBHOOKS__BENCH__URL"] = webhook
            env["FIRESENTRY_NOTIFY__WEBHOOKS__BENCH__SECRET"] = SECRET.decode()
        self.log = (workdir / f"{client_id}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firesentry.cli", *command],
            env=env,
            cwd=workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def family(self) -> list[int]:
        """The engine's pid and its children's (the outbox process)."""
        return [self.proc.pid, *children_of(self.proc.pid)]

    def cpu_s(self) -> float:
        """User + system CPU seconds so far, of the engine and its children."""
        total = 0
        for pid in self.family():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> tuple[float, float]:
        """Current and peak resident memory, MB, of the engine and its children summed (the
        peak: the sum of each one's peak, which may be a little above their peak together)."""
        rss = peak = 0
        for pid in self.family():
            with contextlib.suppress(OSError):
                for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if ln.startswith("VmRSS"):
                        rss += int(ln.split()[1])
                    elif ln.startswith("VmHWM"):
                        peak += int(ln.split()[1])
        return rss / 1024, peak / 1024

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


def count(dsn: str, sql: str = "SELECT count(*) FROM telemetry") -> int:
    """One number from the database."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


def drain_firesentry(
    ep: Endpoints,
    client_id: str,
    workdir: Path,
    expected_rows: int,
    messages: int,
    engine_path: str | None = None,
) -> dict[str, float]:
    """Start the engine on a prefilled session; time from its first commit to the last row."""
    dsn = ep.dsn()
    base = count(dsn)
    eng = EngineProc(ep, client_id, workdir, None, engine_path)
    try:
        deadline = time.monotonic() + 600
        while count(dsn) == base:
            if time.monotonic() > deadline or eng.proc.poll() is not None:
                raise RuntimeError(f"engine did not start; see {eng.log.name}")
            time.sleep(0.02)
        t0, cpu0 = time.perf_counter(), eng.cpu_s()
        while (n := count(dsn)) < base + expected_rows:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {n - base} of {expected_rows} rows after 10 minutes")
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        cpu = eng.cpu_s() - cpu0
        rss, peak = eng.rss_mb()
    finally:
        eng.stop()
        drop_session(ep, client_id)
    return {
        "messages_per_s": messages / elapsed,
        "rows_per_s": expected_rows / elapsed,
        "seconds": elapsed,
        "engine_cpu_cores": cpu / elapsed,
        "engine_rss_mb": rss,
        "engine_peak_rss_mb": peak,
    }


def latency(
    ep: Endpoints,
    workdir: Path,
    rate: float,
    seconds: float,
    devices: int,
    engine_path: str | None = None,
    profile: Path | None = None,
    lean: bool = True,
) -> dict[str, float]:
    """Publish at `rate` msgs/s; every 50th message breaches for a fresh device; time to webhook.

    `lean` publishes with bench.rawpub (ready-made packets, a burst a millisecond) instead of
    paho, whose per-message Python would take, at these rates, a core of the two here.

    An alert that has not arrived 30 s after the last publish counts in the percentiles as
    arriving then (a lower bound: a missing alert is not a fast one). With `profile`, py-spy
    samples the engine while the load runs and writes a flame graph there."""
    sent: dict[str, float] = {}
    received: dict[str, float] = {}

    def on_receive(r: Received) -> None:
        a = r.body.get("alert", {})
        if r.body.get("status") == "firing" and a.get("device_id") in sent:
            received[a["device_id"]] = time.time()

    rx = WebhookReceiver(SECRET, on_receive).start()
    live_id = f"bench-live-{uuid.uuid4().hex[:6]}"
    eng = EngineProc(ep, live_id, workdir, rx.url, engine_path)
    spy: subprocess.Popen[bytes] | None = None
    pub_id = f"bench-live-pub-{uuid.uuid4().hex[:6]}"
    raw: RawPublisher | None = None
    c: mqtt.Client | None = None
    if lean:
        raw = RawPublisher(ep.mqtt_host, ep.mqtt_port, pub_id)
    else:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=pub_id, protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(1000)
        c.connect(ep.mqtt_host, ep.mqtt_port)
        c.loop_start()
    crossings = 0

    def message(k: int) -> tuple[str, bytes]:
        nonlocal crossings
        now_ms = int(time.time() * 1000)
        if k % 50 == 49 and crossings < devices:
            crossings += 1
            dev = f"em-{crossings}"
            body: dict[str, Any] = {"ts": now_ms, "metrics": {"residual_current_ma": 400.0}}
            sent[dev] = time.time()
        else:
            dev = f"em-{k % devices + 1}"
            body = {"ts": now_ms + k % 1000, "metrics": {"temp_c_1": 30.0}}
        return f"{PREFIX}/{dev}/telemetry", msgspec.json.encode(body)

    try:
        log = Path(eng.log.name)
        t_end = time.monotonic() + 60
        while '"subscribed"' not in log.read_text(errors="replace") and time.monotonic() < t_end:
            time.sleep(0.05)
        time.sleep(1.0)  # let the engine load its registry before the clock starts
        if profile is not None:
            spy = _py_spy(eng.proc.pid, profile, seconds)
        n_total = int(rate * seconds)
        start = time.perf_counter()
        k = 0
        while k < n_total:
            if raw is not None:
                due = min(n_total, int((time.perf_counter() - start) * rate) + 1)
                if due > k:
                    raw.send([raw.packet(*message(j)) for j in range(k, due)])
                    k = due
                else:
                    time.sleep(0.0005)
            else:
                assert c is not None
                wait = start + k / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                c.publish(*message(k), qos=1)
                k += 1
        achieved = n_total / (time.perf_counter() - start)
        t_end = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < t_end:
            time.sleep(0.05)
        waited_until = time.time()
    finally:
        if raw is not None:
            raw.close()
        if c is not None:
            c.disconnect()
            c.loop_stop()
        if spy is not None:
            spy.wait(seconds + 60)
        eng.stop()
        drop_session(ep, live_id)
        rx.stop()
    lost = [d for d in sent if d not in received]
    late = [(received[d] - sent[d]) * 1000 for d in received]
    stage_ms = stages(ep.dsn(), sent, received)
    lat = sorted(late + [(waited_until - sent[d]) * 1000 for d in lost])
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {
        "target_rate": rate,
        "achieved_rate": achieved,
        "crossings": len(sent),
        "alerts_received": len(received),
        "alerts_lost_after_30s": len(lost),
        "p50_ms": q[49],
        "p95_ms": q[94],
        "p99_ms": q[98],
        "max_ms": lat[-1] if lat else float("nan"),
        **stage_ms,
    }


def stages(
    dsn: str,
    sent: Mapping[Any, float],
    received: Mapping[Any, float],
    key: str = "d.id",
    where: str = "TRUE",
) -> dict[str, float]:
    """Median milliseconds of each stage of an alert's way, from the rows it left: publish →
    its batch's transaction began (alerts.created_at) → the outbox row was marked sent → the
    receiver had it (the commit and the claim fall inside the middle stage). `key` is the SQL
    of what sent and received are keyed by (the device's id; a fire alarm's point)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT {key}, extract(epoch FROM a.created_at), extract(epoch FROM n.sent_at)"  # noqa: S608
            " FROM alerts a JOIN devices d ON d.num = a.device_num"
            " JOIN notifications n ON n.alert_id = a.id AND n.channel = 'webhook'"
            f" WHERE n.sent_at IS NOT NULL AND {where}"
        ).fetchall()
    parts: dict[str, list[float]] = {"to_batch": [], "batch_to_sent": [], "sent_to_received": []}
    for k, batch_at, sent_at in rows:
        if k in sent and k in received:
            parts["to_batch"].append((float(batch_at) - sent[k]) * 1000)
            parts["batch_to_sent"].append((float(sent_at) - float(batch_at)) * 1000)
            parts["sent_to_received"].append((received[k] - float(sent_at)) * 1000)
    return {f"median_{k}_ms": statistics.median(v) if v else float("nan") for k, v in parts.items()}


def _py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """Sample a process with py-spy (if installed) for `seconds`: collapsed stacks at `out`
    (`.folded`, one stack and its sample count a line; flamegraph.pl draws them), else an SVG."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("py-spy is not installed (pip install py-spy): no profile", flush=True)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-o", str(out), "-r", "200",
         "--nonblocking", "--format", "raw" if out.suffix == ".folded" else "flamegraph"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


# --- orchestration ----------------------------------------------------------------------------


@contextmanager
def private_services() -> Iterator[tuple[Endpoints, Path]]:
    """Durable private Mosquitto and PostgreSQL in a temporary folder."""
    root = Path(tempfile.mkdtemp(prefix="firesentry-bench-"))
    svc = EmbeddedServices(root / "svc", durable=True)
    try:
        ep = svc.up()
        migrate(ep.dsn())
        yield ep, root
    finally:
        svc.destroy()
        shutil.rmtree(root, ignore_errors=True)


def seed_fleet(dsn: str, devices: int) -> None:
    """Units of 10 electrical monitors each, created with COPY."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE telemetry, alerts, alert_events, notifications, rule_state CASCADE")
        conn.execute("DELETE FROM devices")
        conn.execute("DELETE FROM units")
        with conn.cursor() as cur:
            with cur.copy("COPY units (id, name) FROM STDIN") as cp:
                for u in range((devices + 9) // 10):
                    cp.write_row((f"bu-{u}", f"Bench unit {u}"))
            with cur.copy("COPY devices (id, unit_id, type) FROM STDIN") as cp:
                for i in range(1, devices + 1):
                    cp.write_row((f"em-{i}", f"bu-{(i - 1) // 10}", "electrical_monitor"))
        pm = PartitionManager()
        pm.load(conn)
        pm.ensure_ahead(conn, day_of_ms(int(time.time() * 1000)), 2)


def copy_limit_indexed(dsn: str, rows: int, devices: int) -> float:
    """Binary COPY into telemetry itself (its day partition, primary key and WAL), committed:
    what storing readings can cost at best, rows/s."""
    now = int(time.time() * 1000) - 7_200_000  # apart from the readings the runs publish
    dev = (np.arange(rows) % devices + 1).astype(np.int32)
    buf = telemetry_copy_buffer(
        dev,
        np.full(rows, 3, np.int16),
        (now + np.arange(rows)).astype(np.int64),
        np.full(rows, 41.5),
    )
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY telemetry (ts, device_num, metric_id, value) FROM STDIN (FORMAT BINARY)"
            ) as cp,
        ):
            cp.write(buf)
        conn.commit()
        rate = rows / (time.perf_counter() - t)
        conn.execute("TRUNCATE telemetry")
        conn.commit()
    return rate


def run(quick: bool, baseline: Path | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the result that is written to bench/results. With
    `baseline`, that checkout's engine drains the same queues too, in the same run. The full
    run also measures fire alarms behind a backlog (bench.priority) and a city (bench.city)."""
    plan = QUICK if quick else FULL
    result: dict[str, Any] = {"mode": "quick" if quick else "full", "plan": plan.__dict__}
    if baseline is not None:
        result["baseline_path"] = str(baseline)
    with private_services() as (ep, root):
        dsn = ep.dsn()
        copy_rate = round(copy_limit(dsn, 500_000, 1000))
        seed_fleet(dsn, 1000)
        indexed_rate = round(copy_limit_indexed(dsn, 500_000, 1000))
        result["limits"] = {
            "postgres_copy_rows_per_s": copy_rate,
            "postgres_copy_into_telemetry_rows_per_s": indexed_rate,
        }
        print(
            f"PostgreSQL binary COPY: {copy_rate:,} rows/s into a bare table, "
            f"{indexed_rate:,} rows/s into telemetry (its partition, key and WAL, committed)",
            flush=True,
        )
        runs: list[dict[str, Any]] = []
        for devices in plan.fleets:
            seed_fleet(dsn, devices)
            for kind, n, per in (
                ("single", plan.single_messages, 1),
                ("batched", plan.batched_messages, plan.batch_readings),
            ):
                tag = uuid.uuid4().hex[:6]
                ids = {
                    "c_sub": f"bench-csub-{tag}",
                    "broker": f"bench-raw-{tag}",
                    "naive": f"bench-naive-{tag}",
                    "engine": f"bench-ingest-{tag}",
                }
                if baseline is not None:
                    ids["baseline"] = f"bench-before-{tag}"
                for cid in ids.values():
                    open_session(ep, cid)
                start_ms = int(time.time() * 1000) - 3_600_000
                pub_rate = publish(ep, n, devices, per, start_ms)
                rows = n * per * len(METRICS)
                c_sub = drain_c_subscriber(ep, ids["c_sub"], n)
                broker = drain_broker_only(ep, ids["broker"], n)
                naive_msgs, naive_rows = drain_naive(ep, ids["naive"], dsn, plan.naive_seconds)
                fs = drain_firesentry(ep, ids["engine"], root, rows, n)
                before: dict[str, float] | None = None
                if baseline is not None:
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute("TRUNCATE telemetry")
                    before = drain_firesentry(ep, ids["baseline"], root, rows, n, str(baseline))
                for name in ("c_sub", "broker", "naive"):
                    drop_session(ep, ids[name])
                stored = count(dsn, "SELECT count(*) FROM telemetry")
                distinct = count(
                    dsn,
                    "SELECT count(*) FROM (SELECT DISTINCT device_num, metric_id,"
                    " ts FROM telemetry) x",
                )
                r = {
                    "devices": devices,
                    "kind": kind,
                    "messages": n,
                    "rows": rows,
                    "publisher_msgs_per_s": round(pub_rate),
                    "c_subscriber_msgs_per_s": round(c_sub),
                    "broker_only_msgs_per_s": round(broker),
                    "naive_msgs_per_s": round(naive_msgs),
                    "naive_rows_per_s": round(naive_rows),
                    **{k: round(v, 2) for k, v in fs.items()},
                    "ratio_to_broker": round(fs["messages_per_s"] / broker, 3),
                    "ratio_to_c_subscriber": round(fs["messages_per_s"] / c_sub, 3),
                    "readings_per_s": round(n * per / fs["seconds"]),
                    "ratio_to_copy": round(fs["rows_per_s"] / copy_rate, 3),
                    "ratio_to_copy_into_telemetry": round(fs["rows_per_s"] / indexed_rate, 3),
                    "ratio_to_naive": round(fs["messages_per_s"] / naive_msgs, 1),
                    "correct": stored == distinct and stored >= rows,
                }
                if before is not None:
                    r["baseline"] = {k: round(v, 2) for k, v in before.items()}
                    r["ratio_to_baseline"] = round(
                        fs["messages_per_s"] / before["messages_per_s"], 2
                    )
                runs.append(r)
                print(
                    f"{devices:>6} devices {kind:8} firesentry {r['messages_per_s']:>9,.0f} msgs/s "
                    f"{r['readings_per_s']:>9,.0f} readings/s "
                    f"{r['rows_per_s']:>10,.0f} values/s | C sub {c_sub:>8,.0f} | "
                    f"paho {broker:>8,.0f} msgs/s | naive "
                    f"{naive_msgs:>7,.0f} msgs/s | ×{r['ratio_to_naive']} naive, "
                    f"{r['ratio_to_c_subscriber']:.2f} of C sub | cpu {r['engine_cpu_cores']:.2f} "
                    f"cores, rss {r['engine_peak_rss_mb']:.0f} MB | correct {r['correct']}"
                    + (
                        f" | before {before['messages_per_s']:,.0f} msgs/s, "
                        f"×{r['ratio_to_baseline']}"
                        if before is not None
                        else ""
                    ),
                    flush=True,
                )
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("TRUNCATE telemetry")
        result["runs"] = runs
        sustained = min(r["messages_per_s"] for r in runs if r["kind"] == "single")
        seed_fleet(dsn, plan.fleets[-1])
        lat = latency(ep, root, sustained / 2, plan.latency_seconds, plan.fleets[-1])
        lat["all_alerts_received"] = lat["alerts_received"] == lat["crossings"]
        result["latency"] = {
            k: (round(v, 1) if isinstance(v, float) else v) for k, v in lat.items()
        }
        print(
            f"latency at {lat['achieved_rate']:,.0f} msgs/s (target {lat['target_rate']:,.0f}): "
            f"p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms "
            f"({lat['alerts_received']}/{lat['crossings']} alerts)",
            flush=True,
        )
    if not quick:
        # The rest of issue 16's targets in the same run, each on services of its own: a fire
        # alarm behind a backlog, and a city's registry.
        from bench.city import city
        from bench.priority import priority

        result["priority"] = priority(baseline)
        result["city"] = city(baseline=baseline)
    path = write("e2e-quick" if quick else "e2e", result)
    print(f"written to {path}")
    return result


def _sustained(ep: Endpoints, root: Path, messages: int, devices: int, path: str | None) -> float:
    """The engine's single-reading drain rate, msgs/s, on a prefilled session."""
    client_id = f"bench-ingest-{uuid.uuid4().hex[:6]}"
    open_session(ep, client_id)
    publish(ep, messages, devices, 1, int(time.time() * 1000) - 3_600_000)
    fs = drain_firesentry(ep, client_id, root, messages * len(METRICS), messages, path)
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        conn.execute("TRUNCATE telemetry")
    return fs["messages_per_s"]


def curve(
    baseline: Path | None,
    quick: bool,
    fractions: tuple[float, ...],
    profile: bool,
    lean: bool = True,
) -> dict[str, Any]:
    """Latency (publish → webhook, 1 message in 50 a crossing) at fractions of each engine's
    sustained single-message rate; with a baseline checkout, the same for it, in the same run."""
    devices = 1_000 if quick else 10_000
    messages = 20_000 if quick else 150_000
    seconds = 5.0 if quick else 20.0
    engines: dict[str, str | None] = {"after": None}
    if baseline is not None:
        engines = {"before": str(baseline.resolve()), **engines}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "devices": devices,
        "seconds_per_rate": seconds,
        "crossing_every": 50,
        "baseline": str(baseline) if baseline else None,
        "publisher": "bench.rawpub" if lean else "paho",
    }
    for name, path in engines.items():
        # Each engine on a broker and a database of its own, so the second is not measured
        # on what the first left behind.
        with private_services() as (ep, root):
            seed_fleet(ep.dsn(), devices)
            sustained = _sustained(ep, root, messages, devices, path)
            print(f"{name}: sustained {sustained:,.0f} msgs/s", flush=True)
            points: list[dict[str, Any]] = []
            for f in fractions:
                seed_fleet(ep.dsn(), devices)
                out: Path | None = None
                if profile and f == 0.5:
                    out = RESULTS / f"profile-{name}-{stamp}.folded"
                try:
                    pt = latency(ep, root, sustained * f, seconds, devices, path, out, lean)
                except ConnectionError as exc:  # the load was more than the broker took
                    print(f"{name}: {f:.2f} × sustained: not measured: {exc}", flush=True)
                    points.append({"fraction": f, "error": str(exc)})
                    continue
                pt = {"fraction": f, **{k: round(v, 1) for k, v in pt.items()}}
                points.append(pt)
                print(
                    f"{name}: {f:.2f} × sustained = {pt['achieved_rate']:>8,.0f} msgs/s: "
                    f"p50 {pt['p50_ms']:>7,.0f} ms  p95 {pt['p95_ms']:>7,.0f} ms  "
                    f"p99 {pt['p99_ms']:>7,.0f} ms  ({pt['alerts_received']}/{pt['crossings']}"
                    f" alerts; to batch {pt['median_to_batch_ms']:,.0f} ms, batch to sent "
                    f"{pt['median_batch_to_sent_ms']:,.0f} ms)",
                    flush=True,
                )
            result[name] = {"sustained_msgs_per_s": round(sustained), "points": points}
    if "before" in result:
        before, after = result["before"], result["after"]
        result["ratios"] = {
            "sustained_after_over_before": round(
                after["sustained_msgs_per_s"] / before["sustained_msgs_per_s"], 3
            ),
            **{
                f"p99_before_over_after_at_{a['fraction']}": round(b["p99_ms"] / a["p99_ms"], 1)
                for a, b in zip(after["points"], before["points"], strict=True)
                if "p99_ms" in a and "p99_ms" in b
            },
        }
        print(f"ratios: {result['ratios']}", flush=True)
    written = write("latency-curve-quick" if quick else "latency-curve", result)
    print(f"written to {written}")
    return result
