"""The fault suite's harness: a queued backlog of uniquely keyed readings, and the exact checks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from firesentry.embedded import Endpoints
from simulators.services.webhook import WebhookReceiver
from tests.helpers import scalar

DEVICES = 50
CROSS_EVERY = 1000  # one residual-current crossing per 1,000 readings, each on its own device
STALL_S = 10.0  # longer than this without progress while the engine runs is a stall


def seed(db: Endpoints) -> None:
    """A unit with DEVICES electrical monitors and a UTD."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u1', 'Fault Suite Plaza')")
        conn.execute(
            "INSERT INTO devices (id, unit_id, type)"
            " SELECT 'em-' || g, 'u1', 'electrical_monitor' FROM generate_series(0, %s) g",
            (DEVICES - 1,),
        )
        conn.execute(
            "INSERT INTO devices (id, unit_id, type) VALUES ('utd-1', 'u1', 'user_transmission_device')"
        )


def backlog(prefix: str, n: int, t0: int) -> tuple[list[tuple[str, bytes]], set[str]]:
    """n readings, each (device, metric, ts) unique, and the devices that cross 300 mA once."""
    out = []
    crossing: set[str] = set()
    for i in range(n):
        dev = f"em-{i % DEVICES}"
        k, r = divmod(i, CROSS_EVERY)
        value = 40.0
        if r == k % DEVICES and k < DEVICES:
            value = 350.0
            crossing.add(dev)
        body = {"ts": t0 + i, "seq": i, "metrics": {"residual_current_ma": value}}
        out.append((f"{prefix}/{dev}/telemetry", msgspec.json.encode(body)))
    return out, crossing


def publish_all(ep: Endpoints, messages: list[tuple[str, bytes]], timeout: float = 120) -> None:
    """Publish QoS 1 with many in flight, and return once the broker has PUBACKed every one."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bulk-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(ep.mqtt_host, ep.mqtt_port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not PUBACK every message in time"
    finally:
        client.disconnect()
        client.loop_stop()


def durable_commits(db: Endpoints) -> None:
    """The test cluster runs with synchronous_commit off for speed; a crash test needs it on, or
    PostgreSQL itself forgets transactions it reported committed."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db.db_name}" SET synchronous_commit = on')


def stored(db: Endpoints) -> int:
    """Readings in the database."""
    return int(scalar(db.dsn(), "SELECT count(*) FROM telemetry"))


@dataclass
class Progress:
    """Watches the stored count; records the longest time it stood still while it should move."""

    db: Endpoints
    longest_stall_s: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def until(self, predicate: Callable[[int], bool], timeout: float, what: str) -> int:
        """Poll the stored count until predicate(count); fail after timeout or on a stall."""
        start = time.monotonic()
        last_change, last = start, -1
        while True:
            now, n = time.monotonic(), stored(self.db)
            self.samples.append((now, n))
            if n != last:
                last_change, last = now, n
            self.longest_stall_s = max(self.longest_stall_s, now - last_change)
            if predicate(n):
                return n
            if now - start > timeout:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} (at {n})")
            time.sleep(0.02)


def check_exact(
    db: Endpoints,
    published: int,
    crossing: set[str],
    receiver: WebhookReceiver | None,
    other_alerts: int = 0,
) -> dict[str, int]:
    """Stored = published, no duplicate keys, one alert opened per crossing device, every
    notification delivered by idempotency key; returns the figures for the report."""
    dsn = db.dsn()
    figures = {
        "published": published,
        "stored": stored(db),
        "duplicated": int(
            scalar(
                dsn,
                "SELECT count(*) FROM (SELECT 1 FROM telemetry GROUP BY device_num, metric_id, ts"
                " HAVING count(*) > 1) x",
            )
        ),
        "alerts": int(scalar(dsn, "SELECT count(*) FROM alerts")),
        "opened_events": int(
            scalar(dsn, "SELECT count(*) FROM alert_events WHERE kind IN ('opened', 'refired')")
        ),
    }
    assert figures["stored"] == published, figures
    assert figures["duplicated"] == 0, figures
    with psycopg.connect(dsn, autocommit=True) as conn:
        alerted = {
            r[0]
            for r in conn.execute(
                "SELECT d.id FROM alerts a JOIN devices d ON d.num = a.device_num"
                " WHERE a.rule_id = 'residual_current_high'"
            )
        }
        keys = {
            str(r[0])
            for r in conn.execute(
                "SELECT idempotency_key FROM notifications WHERE channel = 'webhook'"
            )
        }
    assert alerted == crossing, figures
    assert figures["opened_events"] == len(crossing) + other_alerts, figures
    if receiver is not None:
        got = {r.idempotency_key for r in receiver.received}
        figures["notifications"] = len(keys)
        figures["delivered"] = len(got & keys)
        figures["posts"] = receiver.attempts
        assert got == keys, (len(got), len(keys))
    return figures
