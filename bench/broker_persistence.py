"""What Mosquitto 2.0's persistence settings cost, and what a kill -9 of the broker loses with each.

For each autosave setting: a persistent MQTT 5 session (clean start off, QoS 1) subscribes and
disconnects (or stays connected without acking: "online-unacked"), several publisher
processes push N QoS 1 messages, and the publish rate (PUBACKs/s), the broker's CPU and the
size of mosquitto.db are read; then the broker is killed with SIGKILL right after the last
PUBACK, restarted on the same files, the session reconnects, and lost = PUBACKed - redelivered.
A second part times one save (SIGUSR1) against the backlog and ~10,000 retained messages.

Loopback only, a private broker in a temporary folder on a free port; every phase has a
deadline. Run: ``python -m bench.broker_persistence`` (``--quick`` for a short pass).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.common import write
from firesentry.embedded import (
    LOOPBACK,
    MAX_PAYLOAD_BYTES,
    MAX_QUEUED_BYTES,
    MAX_QUEUED_MESSAGES,
    PACKET_HEADROOM_BYTES,
    PERSISTENCE,
    _Mosquitto,
    free_port,
)

VARIANTS: dict[str, tuple[str, ...]] = {
    "interval-30": ("autosave_interval 30",),  # before issue 11
    "interval-1": ("autosave_interval 1",),
    "changes-1000": ("autosave_on_changes true", "autosave_interval 1000"),
    "changes-1": ("autosave_on_changes true", "autosave_interval 1"),
}
TELEMETRY = "fs/v1/+/telemetry"
SESSION = "bench-ingest"
CHUNK = 500  # a publisher checks its deadline and window every CHUNK messages
WINDOW = 20_000  # most messages one publisher leaves unacknowledged
GRACE_S = 15.0  # how long after the deadline a publisher still waits for PUBACKs
TICK = os.sysconf("SC_CLK_TCK")
SAVES = 5  # saves timed per save_cost point


def payload(seq: int) -> bytes:
    """A ~135-byte single-reading telemetry message carrying its unique number."""
    body = {
        "ts": 1_764_000_000_000 + seq,
        "seq": seq,
        "metrics": {"residual_current_ma": 41.5, "temp_c_1": 38.2, "voltage_v_a": 221.4},
        "fw": "em-2.4.1",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def topic(seq: int) -> str:
    """The telemetry topic of one of 1,000 devices."""
    return f"fs/v1/em-{seq % 1000:04d}/telemetry"


class Broker(_Mosquitto):
    """The product's private Mosquitto with only its autosave lines replaced, logging each save."""

    def __init__(self, root: Path, persistence: Sequence[str]) -> None:
        super().__init__(root, "mosquitto")
        self._persistence = list(persistence)

    def persistence_lines(self) -> list[str]:
        """The autosave setting under test."""
        return list(self._persistence)

    def config_lines(self, port: int, user: str) -> list[str]:
        """The shipped config plus `log_type information`, which logs every save."""
        return [*super().config_lines(port, user), "log_type information"]

    def switch(self, port: int, persistence: Sequence[str]) -> None:
        """Rewrite the config with another autosave setting and make the broker reload it."""
        self._persistence = list(persistence)
        reloads = self._log_count("Reloading config.")
        self.conf.write_text("\n".join(self.config_lines(port, self.run_user())) + "\n")
        self.reload()
        deadline = time.monotonic() + 10
        while self._log_count("Reloading config.") == reloads:
            if time.monotonic() > deadline:
                raise RuntimeError("the broker did not reload its config within 10 s")
            time.sleep(0.01)

    def _log_count(self, text: str) -> int:
        try:
            return self.log.read_text(errors="replace").count(text)
        except OSError:
            return 0

    @property
    def db_file(self) -> Path:
        """The persistence file."""
        return self.data / "mosquitto.db"

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the broker has used."""
        fields = Path(f"/proc/{self.pid()}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_mb(self) -> float:
        """Resident memory of the broker in MiB."""
        for line in Path(f"/proc/{self.pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def saves_logged(self) -> int:
        """How many saves the log records so far."""
        return self._log_count("Saving in-memory database")

    def kill9(self) -> None:
        """SIGKILL the broker and wait until it is gone."""
        pid = self.pid()
        assert pid is not None, "broker not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _dead(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto {pid} still alive 10 s after SIGKILL")
            time.sleep(0.01)

    def save_now(self, timeout: float = 120) -> tuple[float | None, float]:
        """Ask for a save (SIGUSR1); return (wall s from mosquitto.db.new to its rename, CPU s).

        The wall time is None when the save was too quick to see its .new file (under ~1 ms).
        """
        pid = self.pid()
        assert pid is not None
        before = _inode(self.db_file)
        new_file = self.data / "mosquitto.db.new"
        cpu0 = self.cpu_s()
        os.kill(pid, signal.SIGUSR1)
        started: float | None = None
        deadline = time.monotonic() + timeout
        while _inode(self.db_file) == before:
            if started is None and new_file.exists():
                started = time.perf_counter()
            if time.monotonic() > deadline:
                raise RuntimeError("no save within the deadline after SIGUSR1")
            time.sleep(0.0005)
        wall = None if started is None else time.perf_counter() - started
        time.sleep(0.05)
        return wall, self.cpu_s() - cpu0


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return 0


@contextlib.contextmanager
def private_broker(persistence: Sequence[str]) -> Iterator[tuple[Broker, int]]:
    """A private broker in a temporary folder on a free loopback port; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="fs-broker-bench-"))
    root.chmod(0o755)  # the mosquitto user (root drops to it) must reach its folder
    broker = Broker(root / "mqtt", persistence)
    port = free_port()
    try:
        broker.start(port)
        yield broker, port
    finally:
        pid = broker.pid()
        if pid is not None and not _dead(pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _client(client_id: str, port: int, **kw: Any) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kw)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    return c


def _session_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 7 * 86400
    props.ReceiveMaximum = 65535
    return props


def open_session(port: int) -> None:
    """Create the persistent QoS 1 session subscribed to telemetry, then disconnect it."""
    c = _client(SESSION, port)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.connect(LOOPBACK, port, clean_start=False, properties=_session_props())
    c.loop_start()
    c.subscribe(TELEMETRY, qos=1)
    if not done.wait(10):
        raise RuntimeError("no SUBACK within 10 s")
    c.disconnect()
    c.loop_stop()


class Holder:
    """The session connected but acking nothing, as ingest is while a commit waits."""

    def __init__(self, port: int) -> None:
        self.received = 0
        self.client = _client(SESSION, port, manual_ack=True)
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, port, clean_start=False, properties=_session_props())
        self.client.loop_start()

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        self.received += 1

    def close(self) -> None:
        """Stop the network loop without acking (the broker is gone by then)."""
        self.client.loop_stop()
        with contextlib.suppress(Exception):
            self.client.socket().close()  # type: ignore[union-attr]


def publish_retained(port: int, n: int) -> None:
    """Publish n retained device status messages (QoS 1) and wait for every PUBACK."""
    c = _client(f"bench-status-{uuid.uuid4().hex[:6]}", port)
    c.connect(LOOPBACK, port)
    c.loop_start()
    infos = [
        c.publish(
            f"fs/v1/st-{i:05d}/status",
            json.dumps({"status": "online", "ts": 1_764_000_000_000 + i, "fw": "2.4.1"}).encode(),
            qos=1,
            retain=True,
        )
        for i in range(n)
    ]
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


@dataclass(frozen=True)
class Job:
    """One publisher process's share: numbers first..first+count-1, from start_at to deadline."""

    port: int
    first: int
    count: int
    start_at: float
    deadline: float  # no new message after it; unacked ones are given up GRACE_S later


def _publish_worker(job: Job) -> dict[str, Any]:
    c = _client(f"bench-pub-{uuid.uuid4().hex[:8]}", job.port)
    ack_times: list[float] = []
    c.on_publish = lambda *a: ack_times.append(time.time())
    c.connect(LOOPBACK, job.port)
    c.loop_start()
    while time.time() < job.start_at:
        time.sleep(0.001)
    sent: list[tuple[int, mqtt.MQTTMessageInfo]] = []
    for seq in range(job.first, job.first + job.count):
        if seq % CHUNK == 0:
            if time.time() > job.deadline:
                break
            # Packet ids wrap at 65535: keep at most WINDOW messages unacknowledged.
            while len(sent) - len(ack_times) > WINDOW and time.time() < job.deadline:
                time.sleep(0.001)
        sent.append((seq, c.publish(topic(seq), payload(seq), qos=1)))
    while len(ack_times) < len(sent) and time.time() < job.deadline + GRACE_S:
        time.sleep(0.005)
    acked = [seq for seq, info in sent if info.is_published()]
    c.disconnect()
    c.loop_stop()
    return {"acked": acked, "ack_times": ack_times}


def publish(port: int, first: int, n: int, processes: int, limit_s: float) -> dict[str, Any]:
    """Publish numbers first..first+n-1 from several processes; return acked numbers, timings."""
    share = -(-n // processes)
    start_at = time.time() + 3.0  # every process connected before the clock starts
    jobs = [
        Job(port, first + i * share, min(share, n - i * share), start_at, start_at + limit_s)
        for i in range(processes)
        if i * share < n
    ]
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.map(_publish_worker, jobs)
    acked = sorted(s for r in results for s in r["acked"])
    times = sorted(t for r in results for t in r["ack_times"])
    total = len(times)
    last = times[-1]
    # Rate over the last fifth of the messages: the cost with the biggest backlog.
    k = int(0.8 * total)
    tail = (total - 1 - k) / (last - times[k]) if total > 10 and last > times[k] else None
    return {
        "acked": acked,
        "seconds": last - start_at,
        "start_at": start_at,
        "last_puback": last,
        "rate": total / (last - start_at),
        "rate_last_fifth": tail,
        "truncated_by_time_limit": len(acked) < n,
    }


def redeliveries(
    port: int, expected: int, idle_s: float = 3.0, limit_s: float = 180
) -> dict[str, Any]:
    """Reconnect the session and collect the numbers the broker sends it again."""
    got: list[int] = []
    present: list[bool] = []
    span = [0.0, 0.0]  # times of the first and the last message
    c = _client(SESSION, port)

    def on_message(cl: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        now = time.time()
        if not got:
            span[0] = now
        span[1] = now
        got.append(int(json.loads(m.payload)["seq"]))

    c.on_message = on_message
    c.on_connect = lambda cl, u, flags, rc, props: present.append(bool(flags.session_present))
    c.connect(LOOPBACK, port, clean_start=False, properties=_session_props())
    c.loop_start()
    deadline = time.monotonic() + limit_s
    last_n, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(got)
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        if (n >= expected and time.monotonic() - last_change > 0.5) or (
            time.monotonic() - last_change > idle_s
        ):
            break
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    rate = None
    if len(got) > 1 and span[1] > span[0]:
        rate = (len(got) - 1) / (span[1] - span[0])
    return {"numbers": got, "session_present": bool(present and present[0]), "rate": rate}


class Sampler:
    """Reads the broker's CPU, RSS and db file every 20 ms until the broker is gone."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.last: dict[str, Any] = {}
        self.saved_at: list[float] = []  # when mosquitto.db was seen replaced
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pid = self.broker.pid()
        inode = _inode(self.broker.db_file)
        while pid is not None and not _dead(pid):
            now = _inode(self.broker.db_file)
            if now != inode:
                inode = now
                self.saved_at.append(time.time())
            try:
                snap = {
                    "cpu_s": self.broker.cpu_s(),
                    "rss_mb": self.broker.rss_mb(),
                    "db_bytes": self.broker.db_file.stat().st_size,
                    "t": time.time(),
                }
            except (OSError, ValueError, IndexError):
                return  # broker gone: self.last is its state 20 ms or less before
            if snap["rss_mb"] != snap["rss_mb"]:  # NaN: a zombie has no memory left to read
                return
            self.last = snap
            time.sleep(0.02)

    def join(self) -> dict[str, Any]:
        """Wait for the sampler to see the broker gone; return the last snapshot."""
        self._thread.join(10)
        return self.last


def run_case(
    variant: str,
    n: int,
    retained: int,
    subscriber: str,
    processes: int,
    limit_s: float,
    prefill: int = 0,
) -> dict[str, Any]:
    """One scenario: fill, kill -9 right after the last PUBACK, restart, count what came back.

    prefill: that many messages are queued first with autosave off, then the broker reloads
    with the variant's setting and only the rest is timed (a big backlog in bounded time).
    """
    first = VARIANTS["interval-30"] if prefill else VARIANTS[variant]
    with private_broker(first) as (broker, port):
        if retained:
            publish_retained(port, retained)
        open_session(port)
        pre: list[int] = []
        if prefill:
            pre = publish(port, 0, prefill, processes, 300)["acked"]
            broker.switch(port, VARIANTS[variant])
        broker.save_now()  # a broker that has run a while: session and retained on disk
        holder = Holder(port) if subscriber == "online-unacked" else None
        saves0, cpu0 = broker.saves_logged(), broker.cpu_s()
        sampler = Sampler(broker)
        pub = publish(port, prefill, n - prefill, processes, limit_s)
        broker.kill9()
        killed_at = time.time()
        stats = sampler.join()
        saves = broker.saves_logged() - saves0
        marks = [pub["start_at"], *sampler.saved_at, killed_at]
        held = holder.received if holder else None
        if holder is not None:
            holder.close()
        broker.start(port)
        back = redeliveries(port, len(pre) + len(pub["acked"]))
        restarted_db = broker.db_file.stat().st_size if broker.db_file.exists() else 0
        broker.stop()
    acked = set(pre) | set(pub["acked"])
    got = back["numbers"]
    redelivered = acked & set(got)
    cpu = stats["cpu_s"] - cpu0
    return {
        "variant": variant,
        "persistence": list(VARIANTS[variant]),
        "messages": n,
        "prefilled_untimed": prefill,
        "retained": retained,
        "subscriber": subscriber,
        "publishers": processes,
        "acked": len(acked),
        "truncated_by_time_limit": pub["truncated_by_time_limit"],
        "publish_seconds": round(pub["seconds"], 3),
        "publish_msgs_per_s": round(pub["rate"]),
        "publish_msgs_per_s_last_fifth": None
        if pub["rate_last_fifth"] is None
        else round(pub["rate_last_fifth"]),
        "broker_cpu_s": round(cpu, 2),
        "broker_cpu_util": round(cpu / max(1e-9, pub["seconds"]), 2),
        "broker_cpu_us_per_msg": round(1e6 * cpu / max(1, len(pub["acked"])), 1),
        "broker_rss_mb": round(stats["rss_mb"], 1),
        "saves_during_publish": saves,
        # Longest time mosquitto.db went unreplaced while publishing (20 ms sampling).
        "max_s_between_saves": round(max(b - a for a, b in itertools.pairwise(marks)), 2),
        "last_save_before_kill_s": round(killed_at - marks[-2], 3),
        "db_bytes_at_kill": stats["db_bytes"],
        "received_unacked_before_kill": held,
        "kill_after_last_puback_ms": round(1000 * (killed_at - pub["last_puback"]), 1),
        "session_present_after_restart": back["session_present"],
        "redelivered": len(redelivered),
        "duplicates": len(got) - len(set(got)),
        "lost": len(acked) - len(redelivered),
        "db_bytes_after_restart": restarted_db,
    }


def save_cost(backlog: int, retained: int, processes: int) -> dict[str, Any]:
    """Time one save (SIGUSR1) with a backlog of queued messages and some retained ones."""
    with private_broker(("autosave_interval 0",)) as (broker, port):
        if retained:
            publish_retained(port, retained)
        open_session(port)
        if backlog:
            publish(port, 0, backlog, processes, 300)
        walls: list[float] = []
        cpu = 0.0
        for _ in range(SAVES):
            wall, c = broker.save_now()
            cpu += c
            if wall is not None:
                walls.append(wall)
        size = broker.db_file.stat().st_size
        rss = broker.rss_mb()
        broker.stop()
    return {
        "backlog": backlog,
        "retained": retained,
        "db_bytes": size,
        "db_bytes_per_message": round(size / backlog, 1) if backlog else None,
        "broker_rss_mb": round(rss, 1),
        "save_wall_ms_median": round(1000 * statistics.median(walls), 1) if walls else "< 1",
        "save_wall_ms_max": round(1000 * max(walls), 1) if walls else "< 1",
        "save_cpu_ms_mean": round(1000 * cpu / SAVES, 1),
        "note": f"{SAVES} saves by SIGUSR1; wall: mosquitto.db.new seen until renamed (fsync in)",
    }


def shipped() -> dict[str, Any]:
    """The broker settings firesentry/embedded.py ships."""
    return {
        "persistence": list(PERSISTENCE),
        "max_queued_messages": MAX_QUEUED_MESSAGES,
        "max_queued_bytes": MAX_QUEUED_BYTES,
        "max_packet_size": MAX_PAYLOAD_BYTES + PACKET_HEADROOM_BYTES,
    }


def bound_check(processes: int, extra: int = 20_000) -> dict[str, Any]:
    """Fill one offline session past the shipped queue bound (shipped config); what it costs."""
    n = MAX_QUEUED_MESSAGES + extra
    with private_broker(PERSISTENCE) as (broker, port):
        open_session(port)
        broker.save_now()
        cpu0 = broker.cpu_s()
        pub = publish(port, 0, n, processes, 900)
        cpu = broker.cpu_s() - cpu0
        dropping = broker._log_count("Outgoing messages are being dropped")
        rss, size = broker.rss_mb(), broker.db_file.stat().st_size
        saves = [broker.save_now() for _ in range(2)]
        back = redeliveries(port, n, idle_s=5, limit_s=600)
        broker.stop()
    got = back["numbers"]
    return {
        "shipped": shipped(),
        "published_and_acked": len(pub["acked"]),
        "publish_seconds": round(pub["seconds"], 1),
        "publish_msgs_per_s": round(pub["rate"]),
        "publish_msgs_per_s_last_fifth": pub["rate_last_fifth"] and round(pub["rate_last_fifth"]),
        "broker_cpu_us_per_msg": round(1e6 * cpu / max(1, len(pub["acked"])), 1),
        "broker_rss_mb_at_bound": round(rss, 1),
        "db_bytes_at_bound": size,
        "save_wall_s_at_bound": [None if w is None else round(w, 3) for w, _ in saves],
        "save_cpu_s_at_bound": [round(c, 3) for _, c in saves],
        "dropping_logged": dropping,
        "delivered_after": len(set(got)),
        "dropped_for_the_session": len(pub["acked"]) - len(set(got)),
        "drain_msgs_per_s": back["rate"] and round(back["rate"]),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run every scenario and write bench/results/broker-persistence-<UTC time>-<host>.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="5,000 and 20,000 messages only")
    ap.add_argument("--publishers", type=int, default=3)
    ap.add_argument("--limit-s", type=float, default=120.0, help="cap on each publish phase")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--bound", action="store_true", help="only fill a session past the shipped queue bound"
    )
    args = ap.parse_args(argv)
    if args.bound:
        b = bound_check(args.publishers)
        print(json.dumps(b), flush=True)
        print(write("broker-persistence-bound", {"mosquitto": "2.0.11 (Debian), loopback", **b}))
        return
    sizes = (5_000, 20_000) if args.quick else (20_000, 100_000)
    variants = args.variants.split(",")
    cases: list[dict[str, Any]] = []

    def run(variant: str, n: int, retained: int, subscriber: str) -> None:
        # Every save rewrites the whole file: once per loop turn is too slow to fill a big
        # backlog in bounded time, so that case times only its last sizes[0] // 2 messages.
        prefill = n - sizes[0] // 2 if variant == "changes-1" and n > sizes[0] else 0
        r = run_case(variant, n, retained, subscriber, args.publishers, args.limit_s, prefill)
        cases.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "persistence"}), flush=True)

    for variant in variants:
        for n in sizes:
            run(variant, n, 0, "offline")
        run(variant, sizes[0], 10_000, "offline")
        run(variant, sizes[0], 0, "online-unacked")
    saves = []
    for backlog in (0, *sizes):
        for retained in (0, 10_000):
            s = save_cost(backlog, retained, args.publishers)
            saves.append(s)
            print(json.dumps(s), flush=True)
    path = write(
        "broker-persistence",
        {
            "mosquitto": "2.0.11 (Debian), loopback, private broker with the shipped config lines",
            "shipped": shipped(),
            "payload_bytes": len(payload(12345)),
            "cases": cases,
            "save_cost": saves,
        },
    )
    print(path)


if __name__ == "__main__":
    main()
