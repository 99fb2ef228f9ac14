"""Operations: liveness, readiness (database, broker, engines, outbox), metrics, who am I."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import psycopg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.auth import Permission
from api.models import ChannelAlertOut, EngineCheck, Health, Me, OutboxCheck, Readiness
from api.routing import PREFIX, Call, Route, holds_token, json_response
from api.state import ApiOptions
from store import health, instruments

# MQTT 3.1.1 CONNECT with clean session, keepalive 10 s and client id "firesentry-probe".
_CLIENT_ID = b"firesentry-probe"
_VARIABLE = b"\x00\x04MQTT\x04\x02\x00\x0a"
_PAYLOAD = len(_CLIENT_ID).to_bytes(2, "big") + _CLIENT_ID
_CONNECT = bytes([0x10, len(_VARIABLE) + len(_PAYLOAD)]) + _VARIABLE + _PAYLOAD
_DISCONNECT = b"\xe0\x00"


async def probe_broker(host: str, port: int, within_s: float) -> str:
    """'ok' when an MQTT broker answers CONNECT with a CONNACK (any return code), else why not."""

    async def exchange() -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_CONNECT)
            await writer.drain()
            head = await reader.readexactly(4)
            if head[0] != 0x20:
                return f"unexpected answer 0x{head[0]:02x} from {host}:{port}"
            if head[3] == 0:
                writer.write(_DISCONNECT)
                await writer.drain()
            # Any CONNACK proves a live broker; a refusal (auth on) is fine for readiness.
            return "ok"
        finally:
            writer.close()
            await writer.wait_closed()

    try:
        return await asyncio.wait_for(exchange(), within_s)
    except TimeoutError:
        return f"no answer from {host}:{port} within {within_s:g} s"
    except (OSError, asyncio.IncompleteReadError) as exc:
        return f"{host}:{port}: {exc}"


async def healthz(call: Call) -> web.StreamResponse:
    """GET /healthz: the process answers."""
    return json_response(Health(status="ok"))


async def read_health(
    call: Call,
    within_s: float,
    read: Callable[[psycopg.Connection[Any]], health.Snapshot] = health.snapshot,
) -> tuple[str, health.Snapshot | None]:
    """('ok', the engines and the outbox backlog) when the database answers in time, else why not.

    Reading the health rows is itself the database probe: one round trip, one deadline.
    """
    try:
        snap = await asyncio.wait_for(call.state.db(read), within_s)
    except TimeoutError:
        return f"no answer within {within_s:g} s", None
    except Exception as exc:  # any failure means not ready; say which
        return f"{type(exc).__name__}: {str(exc).strip()[:200]}", None
    return "ok", snap


def engine_check(e: health.EngineStatus, opts: ApiOptions) -> EngineCheck:
    """One engine's report judged against the readiness limits."""
    h = e.health
    fresh = e.age_s <= opts.ready_stale_after_s
    problems = [] if fresh else [f"stale (last report {e.age_s:.0f} s ago)"]
    if not h.broker_connected:
        problems.append("broker disconnected")
    if not h.ingest_alive:
        problems.append("ingest not alive")
    if not h.outbox_alive:
        problems.append("outbox not alive")
    if h.ingest_lag_s > opts.ready_max_lag_s:
        problems.append(f"ingest lag {h.ingest_lag_s:.0f} s (limit {opts.ready_max_lag_s:g} s)")
    return EngineCheck(
        client_id=h.client_id,
        host=h.host,
        pid=h.pid,
        status="ok" if not problems else ", ".join(problems),
        fresh=fresh,
        updated_s_ago=round(e.age_s, 1),
        broker_connected=h.broker_connected,
        ingest_alive=h.ingest_alive,
        outbox_alive=h.outbox_alive,
        ingest_lag_s=h.ingest_lag_s,
        committed_messages=h.committed_messages,
        started_at=h.started_at,
        last_batch_at=h.last_batch_at,
    )


async def readiness(
    call: Call, read: Callable[[psycopg.Connection[Any]], health.Snapshot] = health.snapshot
) -> Readiness:
    """Database, broker, every engine's health and the outbox backlog, each judged."""
    opts = call.state.options
    (db, snap), broker = await asyncio.gather(
        read_health(call, opts.probe_timeout_s, read),
        probe_broker(opts.mqtt_host, opts.mqtt_port, opts.probe_timeout_s),
    )
    checks = {"database": db, "broker": broker}
    engines: list[EngineCheck] = []
    outbox: OutboxCheck | None = None
    if snap is None:
        checks["engine"] = checks["outbox"] = "unknown: the database did not answer"
    else:
        engines = [engine_check(e, opts) for e in snap.engines]
        bad = [f"{e.client_id}: {e.status}" for e in engines if e.status != "ok"]
        checks["engine"] = "none registered" if not engines else "; ".join(bad) or "ok"
        outbox = OutboxCheck(due=snap.outbox.due, oldest_due_s=round(snap.outbox.oldest_due_s, 1))
        checks["outbox"] = (
            "ok"
            if snap.outbox.oldest_due_s <= opts.ready_max_outbox_age_s
            else f"{snap.outbox.due} due, the oldest waiting {snap.outbox.oldest_due_s:.0f} s "
            f"(limit {opts.ready_max_outbox_age_s:g} s)"
        )
    ready = all(v == "ok" for v in checks.values())
    status: Literal["ready", "not_ready"] = "ready" if ready else "not_ready"
    # A failing receiver is not the engine's readiness (a load balancer must not drop the API
    # for it): said beside the checks.
    failing = (
        [] if snap is None else [ChannelAlertOut.model_validate(a) for a in snap.channel_alerts]
    )
    return Readiness(
        status=status, checks=checks, engines=engines, outbox=outbox, channel_alerts=failing
    )


async def readyz(call: Call) -> web.StreamResponse:
    """GET /readyz: database, broker, every engine's health and the outbox backlog, each judged.

    Without a live token only ok/fail per part: the reasons name hosts, ports, engine ids and
    database errors, which help an attacker and are no business of a load balancer's.
    """
    detailed, body = await asyncio.gather(
        holds_token(call.request, call.state.options.probe_timeout_s), readiness(call)
    )
    if not detailed:
        body = Readiness(
            status=body.status,
            checks={k: "ok" if v == "ok" else "fail" for k, v in body.checks.items()},
        )
    return json_response(body, status=200 if body.status == "ready" else 503)


async def status(call: Call) -> web.StreamResponse:
    """GET /status: what /readyz says, with its reasons, answered 200 either way (the console
    polls it to say what is degraded; a 503 would read as the API itself failing)."""
    return json_response(await readiness(call, health.status_snapshot))


async def metrics(call: Call) -> web.StreamResponse:
    """GET /metrics: Prometheus text format (engine health read from the database now)."""
    opts = call.state.options
    _, snap = await read_health(call, opts.probe_timeout_s, health.metrics_snapshot)
    instruments.engine_health(snap, opts.ready_stale_after_s)
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def me(call: Call) -> web.StreamResponse:
    """GET /me."""
    who = call.who
    return json_response(
        Me(
            name=who.name,
            role=who.role,
            permissions=sorted(p.value for p in who.permissions),
            units=None if who.units is None else list(who.units),
        )
    )


ROUTES = [
    Route(
        "GET",
        "/healthz",
        healthz,
        "Liveness: the process answers (no token)",
        None,
        "operations",
        authenticated=False,
        response=Health,
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness: 200 when the database and the broker answer, every engine reports fresh "
        "health (broker connected, ingest and outbox alive, lag in bounds) and the outbox keeps "
        "up; else 503. Without a token each component is just ok or fail; with any live token "
        "(any role) the reasons and every engine's report",
        None,
        "operations",
        authenticated=False,
        response=Readiness,
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics: messages, rejections, batches, commits, alerts, notifications, "
        "engine health (lag, broker, workers) and the outbox backlog",
        Permission.METRICS_READ,
        "operations",
        media="text/plain",
    ),
    Route(
        "GET",
        f"{PREFIX}/status",
        status,
        "What /readyz judges (database, broker, engines, outbox), with the reasons, always "
        "200: the console's degraded banner (any role)",
        None,
        "operations",
        response=Readiness,
    ),
    Route(
        "GET",
        f"{PREFIX}/me",
        me,
        "The calling token: name, role, permissions, units",
        None,
        "operations",
        response=Me,
    ),
]
