"""`firesentry bench --priority`: a fire alarm behind a telemetry backlog (火警优先).

The engine runs, connected, and is paused (SIGSTOP) while a burst of telemetry fills the broker's
queue for it; it is let go (SIGCONT) and a panel reports a fire at once. Timed: the fire
alarm's publish to its webhook, over many trials, each with a fresh detector (a new alert,
told at once), with how much telemetry was still queued when the alarm went out and where the
time went (publish → its batch's transaction → the webhook's row sent → received). With
`baseline`, another checkout's engine is measured the same way in the same run (before 2026-12
one session carried everything, so the alarm waited for the whole backlog).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from bench.common import write
from bench.e2e import (
    METRICS,
    PREFIX,
    SECRET,
    EngineProc,
    count,
    drop_session,
    private_services,
    seed_fleet,
    stages,
)
from bench.rawpub import RawPublisher
from simulators.services.webhook import Received, WebhookReceiver

DEVICES = 1_000


def _trials(
    ep: Any, root: Path, trials: int, backlog: int, engine_path: str | None
) -> dict[str, Any]:
    """Run `trials` fire alarms behind `backlog` readings each against one engine."""
    sent: dict[int, float] = {}
    received: dict[int, float] = {}

    def on_receive(r: Received) -> None:
        a = r.body.get("alert", {})
        if r.body.get("status") == "firing" and a.get("rule_id") == "fire_alarm":
            received.setdefault(int(a.get("point") or 0), time.time())

    rx = WebhookReceiver(SECRET, on_receive).start()
    client_id = f"bench-prio-{uuid.uuid4().hex[:6]}"
    eng = EngineProc(ep, client_id, root, rx.url, engine_path, log_level="info")
    pub = RawPublisher(ep.mqtt_host, ep.mqtt_port, f"bench-prio-pub-{uuid.uuid4().hex[:6]}")
    dsn = ep.dsn()
    queued: list[int] = []
    published = 0
    try:
        log = Path(eng.log.name)
        t_end = time.monotonic() + 60
        while log.read_text(errors="replace").count('"subscribed"') < 2:
            if time.monotonic() > t_end:
                break  # an engine of one session says it once
            time.sleep(0.05)
        time.sleep(1.0)  # the registry loaded
        for point in range(1, trials + 1):
            base = count(dsn) // len(METRICS)
            now_ms = int(time.time() * 1000)
            packets = [
                pub.packet(
                    f"{PREFIX}/em-{k % DEVICES + 1}/telemetry",
                    msgspec.json.encode(
                        {"ts": now_ms - backlog + k, "seq": published + k, "metrics": METRICS}
                    ),
                )
                for k in range(backlog)
            ]
            # The engine sleeps while the backlog goes in: the broker queues all of it.
            os.kill(eng.proc.pid, signal.SIGSTOP)
            try:
                for k in range(0, backlog, 20_000):
                    pub.send(packets[k : k + 20_000])
                pub.drain(60)
            finally:
                os.kill(eng.proc.pid, signal.SIGCONT)
            published += backlog
            fire = {"ts": int(time.time() * 1000), "seq": point, "kind": "fire_alarm",
                    "loop": 1, "point": point}  # fmt: skip
            stored = count(dsn) // len(METRICS) - base
            sent[point] = time.time()
            pub.send([pub.packet(f"{PREFIX}/utd-1/event", msgspec.json.encode(fire))])
            queued.append(backlog - stored)
            t_end = time.monotonic() + 60
            while point not in received and time.monotonic() < t_end:
                time.sleep(0.005)
            # The next trial starts on an empty queue: wait for the backlog to be written.
            while count(dsn) // len(METRICS) < base + backlog and time.monotonic() < t_end + 120:
                time.sleep(0.1)
        pub.drain(60)
    finally:
        pub.close()
        eng.stop()
        drop_session(ep, client_id)
        drop_session(ep, client_id + "-events")
        rx.stop()
    # Keyed by the detector's point: each trial's fire alarm is a point of its own.
    stage_ms = stages(dsn, sent, received, key="a.point", where="a.rule_id = 'fire_alarm'")
    lat = sorted(
        (received.get(p, time.time()) - sent[p]) * 1000 for p in sent
    )  # a missing one counts as arriving now
    # Inclusive: with 20 trials the p99 lies between the two slowest, never beyond the slowest.
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else [lat[0]] * 99
    return {
        "trials": trials,
        "backlog_published": backlog,
        "queued_at_alarm_min": min(queued),
        "queued_at_alarm_median": statistics.median(queued),
        "alarms_received": len(received),
        "p50_ms": round(q[49], 1),
        "p95_ms": round(q[94], 1),
        "p99_ms": round(q[98], 1),
        "max_ms": round(lat[-1], 1),
        **{k: round(v, 1) for k, v in stage_ms.items()},
    }


def priority(
    baseline: Path | None, trials: int = 20, backlog: int = 120_000, baseline_trials: int = 5
) -> dict[str, Any]:
    """The fire-alarm-behind-backlog benchmark (and a baseline's, in the same run)."""
    result: dict[str, Any] = {"devices": DEVICES}
    with private_services() as (ep, root):
        seed_fleet(ep.dsn(), DEVICES)
        with psycopg.connect(ep.dsn(), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO devices (id, unit_id, type) VALUES"
                " ('utd-1', 'bu-0', 'user_transmission_device')"
            )
        result["firesentry"] = _trials(ep, root, trials, backlog, None)
        _print("firesentry", result["firesentry"])
        if baseline is not None:
            with psycopg.connect(ep.dsn(), autocommit=True) as conn:
                conn.execute("TRUNCATE telemetry, events, alerts, alert_events CASCADE")
            result["baseline_path"] = str(baseline)
            result["baseline"] = _trials(ep, root, baseline_trials, backlog, str(baseline))
            _print("baseline", result["baseline"])
            result["p99_ratio_baseline_to_firesentry"] = round(
                result["baseline"]["p99_ms"] / max(result["firesentry"]["p99_ms"], 0.1), 1
            )
    path = write("priority", result)
    print(f"written to {path}")
    return result


def _print(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name:10} fire alarm behind ≥{r['queued_at_alarm_min']:,} queued readings: "
        f"p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, "
        f"max {r['max_ms']:.0f} ms ({r['alarms_received']}/{r['trials']} received)",
        flush=True,
    )
