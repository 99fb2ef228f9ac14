"""`firesentry bench --city`: the engine with a city's registry (default 100,000 devices).

Timed and read from /proc: how long `firesentry run` takes from its start to both sessions
subscribed, its memory idle and at its peak while it drains a burst of single readings spread
over every device, and what a registry reload costs (done when devices change).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from bench.common import write
from bench.e2e import METRICS, PREFIX, EngineProc, count, drop_session, private_services, seed_fleet
from bench.rawpub import RawPublisher
from devices.registry import Registry
from firesentry.embedded import Endpoints
from rules.engine import RuleEngine
from rules.loader import load_rules
from store import registry as store_registry


def _sessions(engine_path: str | None) -> int:
    """How many MQTT sessions the checkout's engine subscribes (one before fire alarms got
    their own, when ingest had no session module)."""
    if engine_path is None:
        return 2
    return 2 if (Path(engine_path) / "ingest" / "session.py").exists() else 1


def _ready(eng: EngineProc, deadline_s: float, sessions: int) -> float:
    """Seconds from the engine's start until all its sessions are subscribed."""
    log = Path(eng.log.name)
    t0 = time.monotonic()
    while log.read_text(errors="replace").count('"subscribed"') < sessions:
        if time.monotonic() - t0 > deadline_s or eng.proc.poll() is not None:
            raise RuntimeError(f"engine not ready; see {log}")
        time.sleep(0.02)
    return time.monotonic() - t0


def _reload_s(dsn: str) -> tuple[float, float]:
    """Seconds to load the registry from the database, and to resolve the rules over it."""
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        registry = store_registry.load_registry(conn)
        loaded = time.perf_counter() - t
    engine = RuleEngine(load_rules(None), Registry.of([]))
    t = time.perf_counter()
    engine.update_registry(registry)
    return loaded, time.perf_counter() - t


def _engine_in_city(
    ep: Endpoints, root: Path, devices: int, messages: int, engine_path: str | None
) -> dict[str, Any]:
    """One engine over the city: start-up, idle memory, a drain over every device, peak memory."""
    dsn = ep.dsn()
    result: dict[str, Any] = {}
    client_id = f"bench-city-{uuid.uuid4().hex[:6]}"
    # At info level the engine says when each session is subscribed.
    eng = EngineProc(ep, client_id, root, None, engine_path, log_level="info")
    try:
        result["start_to_subscribed_s"] = round(_ready(eng, 120, _sessions(engine_path)), 2)
        time.sleep(3.0)
        result["idle_rss_mb"] = round(eng.rss_mb()[0], 1)
        base = count(dsn)
        pub = RawPublisher(ep.mqtt_host, ep.mqtt_port, f"bench-city-pub-{uuid.uuid4().hex[:6]}")
        now = int(time.time() * 1000) - 3_600_000
        t = time.perf_counter()
        try:
            for k0 in range(0, messages, 20_000):
                pub.send(
                    [
                        pub.packet(
                            f"{PREFIX}/em-{k % devices + 1}/telemetry",
                            msgspec.json.encode({"ts": now + k, "seq": k, "metrics": METRICS}),
                        )
                        for k in range(k0, min(messages, k0 + 20_000))
                    ]
                )
            pub.drain(120)
        finally:
            pub.close()
        rows = messages * len(METRICS)
        deadline = time.monotonic() + 300
        while count(dsn) - base < rows and time.monotonic() < deadline:
            time.sleep(0.1)
        result["drain_msgs_per_s"] = round(messages / (time.perf_counter() - t))
        result["stored_all"] = count(dsn) - base == rows
        rss, peak = eng.rss_mb()
        result["rss_after_mb"] = round(rss, 1)
        result["peak_rss_mb"] = round(peak, 1)
    finally:
        eng.stop()
        drop_session(ep, client_id)
        drop_session(ep, client_id + "-events")
    return result


def city(
    devices: int = 100_000, messages: int = 300_000, baseline: Path | None = None
) -> dict[str, Any]:
    """The city-sized run (and a baseline checkout's engine in the same run); written to
    bench/results/city-*.json. RSS is the engine's with its children (the outbox process)."""
    result: dict[str, Any] = {"devices": devices, "messages": messages}
    with private_services() as (ep, root):
        dsn = ep.dsn()
        seed_fleet(dsn, devices)
        load_s, resolve_s = _reload_s(dsn)
        result["registry_load_s"] = round(load_s, 2)
        result["rules_resolve_s"] = round(resolve_s, 2)
        result.update(_engine_in_city(ep, root, devices, messages, None))
        _print("firesentry", devices, messages, result)
        if baseline is not None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE telemetry")
            result["baseline_path"] = str(baseline)
            result["baseline"] = _engine_in_city(ep, root, devices, messages, str(baseline))
            _print("baseline", devices, messages, result["baseline"])
    print(
        f"registry load {result['registry_load_s']} s, rules resolved in "
        f"{result['rules_resolve_s']} s",
        flush=True,
    )
    path = write("city", result)
    print(f"written to {path}")
    return result


def _print(name: str, devices: int, messages: int, r: dict[str, Any]) -> None:
    print(
        f"{name:10} {devices:,} devices: subscribed {r['start_to_subscribed_s']} s after start, "
        f"idle RSS {r['idle_rss_mb']} MB, peak {r['peak_rss_mb']} MB while draining "
        f"{messages:,} readings at {r['drain_msgs_per_s']:,} msgs/s (all stored: "
        f"{r['stored_all']})",
        flush=True,
    )
