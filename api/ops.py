"""Operations: liveness, readiness (database and broker), Prometheus metrics, who am I."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.auth import Permission
from api.models import Health, Me
from api.routing import PREFIX, Call, Route, json_response

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


def _select_one(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT 1")


async def probe_database(call: Call, within_s: float) -> str:
    """'ok' when a pooled connection answers SELECT 1 in time, else why not."""
    try:
        await asyncio.wait_for(call.state.db(_select_one), within_s)
    except TimeoutError:
        return f"no answer within {within_s:g} s"
    except Exception as exc:  # any failure means not ready; say which
        return f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return "ok"


async def healthz(call: Call) -> web.StreamResponse:
    """GET /healthz: the process answers."""
    return json_response(Health(status="ok"))


async def readyz(call: Call) -> web.StreamResponse:
    """GET /readyz: the database and the broker are reachable."""
    opts = call.state.options
    db, broker = await asyncio.gather(
        probe_database(call, opts.probe_timeout_s),
        probe_broker(opts.mqtt_host, opts.mqtt_port, opts.probe_timeout_s),
    )
    ready = db == "ok" and broker == "ok"
    return json_response(
        Health(status="ready" if ready else "not_ready", checks={"database": db, "broker": broker}),
        status=200 if ready else 503,
    )


async def metrics(call: Call) -> web.StreamResponse:
    """GET /metrics: Prometheus text format."""
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
        "Readiness: 200 when the database and the MQTT broker answer, else 503 (no token)",
        None,
        "operations",
        authenticated=False,
        response=Health,
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics: messages, rejections, batches, commits, alerts, notifications",
        Permission.METRICS_READ,
        "operations",
        media="text/plain",
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
