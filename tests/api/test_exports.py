"""CSV exports cannot starve the control room: their own pool, one per token, idle clients dropped."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from devices.catalog import METRIC_BY_NAME
from firesentry.embedded import Endpoints
from store import tokens as store_tokens
from store.partitions import PartitionManager
from tests.api.conftest import NOW, Seeded, api_options, auth, eventually

Client = TestClient[Any, Any]
# Enough readings (about 10 MB of CSV) that a client that never reads fills every socket buffer.
ROWS = 150_000
EXPORT = "/api/v1/telemetry.csv?device=u1-em&metric=temp_c_2"


@pytest.fixture()
def bulky(seeded: Seeded) -> Seeded:
    """The seed plus 150,000 readings of u1-em's temp_c_2 in the last hour."""
    start = NOW - dt.timedelta(hours=1)
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        pm = PartitionManager()
        pm.load(conn)
        pm.ensure(conn, {start.date(), NOW.date()})
        num = conn.execute("SELECT num FROM devices WHERE id = 'u1-em'").fetchone()
        assert num is not None
        metric = METRIC_BY_NAME["temp_c_2"].id
        with conn.cursor().copy(
            "COPY telemetry (ts, device_num, metric_id, value) FROM STDIN"
        ) as copy:
            for i in range(ROWS):
                copy.write_row((start + dt.timedelta(milliseconds=20 * i), num[0], metric, 21.5))
    return seeded


def analysts(dsn: str, n: int) -> list[str]:
    """n fresh analyst tokens."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [store_tokens.create_token(conn, f"analyst {i}", "analyst")[1] for i in range(n)]


class Hanging:
    """Raw sockets that ask for an export and never read a byte of it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = []

    def open(self, token: str) -> socket.socket:
        """Send one export request; a tiny receive buffer so the server's writes block soon."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.port))
        s.sendall(
            f"GET {EXPORT} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        self.socks.append(s)
        return s

    def close(self) -> None:
        """Close every socket."""
        for s in self.socks:
            s.close()


def in_transaction(dsn: str) -> int:
    """Sessions of the API that hold an export's server-side cursor open (fetching or not)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'firesentry-api%%' AND xact_start IS NOT NULL"
            " AND query LIKE '%%firesentry_export%%'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture()
async def export_client(db: Endpoints, bulky: Seeded) -> AsyncIterator[Client]:
    """The app with the shipped export limits, a 1 s idle timeout and a 4-connection pool."""
    opts = api_options(db, export_pool_max=2, export_per_token=1, export_idle_timeout_s=1.0)
    async with TestClient(TestServer(build_app(opts))) as c:
        yield c


@pytest.fixture()
def hanging(export_client: Client) -> Iterator[Hanging]:
    """Non-reading export clients of the app."""
    h = Hanging(export_client.port or 0)
    yield h
    h.close()


async def board_answers(client: Client, seeded: Seeded) -> None:
    """The control room's alert list answers 200 within a second, three times running."""
    for _ in range(3):
        started = time.monotonic()
        r = await asyncio.wait_for(
            client.get("/api/v1/alerts?state=open", headers=auth(seeded.tokens["operator"])), 1.0
        )
        assert r.status == 200 and time.monotonic() - started < 1.0
        await r.read()


async def test_eight_exports_that_never_read_leave_the_board_up(
    db: Endpoints, bulky: Seeded
) -> None:
    """Eight analysts' exports that never read hold at most the export pool; the board answers."""
    opts = api_options(db, export_pool_max=2, export_idle_timeout_s=60.0)
    async with TestClient(TestServer(build_app(opts))) as client:
        h = Hanging(client.port or 0)
        try:
            for token in analysts(bulky.dsn, 8):
                h.open(token)
            await eventually(lambda: in_transaction(bulky.dsn) >= 2, 10, "exports under way")
            await board_answers(client, bulky)
            assert in_transaction(bulky.dsn) <= 2
        finally:
            h.close()


async def test_one_export_per_token_and_a_full_pool_are_refused_at_once(
    export_client: Client, hanging: Hanging, bulky: Seeded
) -> None:
    """A second export of a token is 429, an export beyond the pool 503, both with Retry-After."""
    first, second, third = analysts(bulky.dsn, 3)
    a = hanging.open(first)
    await eventually(lambda: in_transaction(bulky.dsn) == 1, 10, "the first export under way")
    r = await export_client.get(EXPORT, headers=auth(first))
    body = await r.json()
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    assert "already running 1 export" in body["message"]
    hanging.open(second)
    await eventually(lambda: in_transaction(bulky.dsn) == 2, 10, "the second export under way")
    r = await export_client.get(EXPORT, headers=auth(third))
    assert r.status == 503 and int(r.headers["Retry-After"]) > 0
    assert "export" in (await r.json())["message"]
    await board_answers(export_client, bulky)
    a.close()
    r = await eventually(
        lambda: _complete_export(export_client, first), 10, "the first token may export again"
    )
    assert r.count(b"\n") == ROWS + 1


async def _complete_export(client: Client, token: str) -> bytes | None:
    async with client.get(EXPORT, headers=auth(token)) as r:
        return await r.read() if r.status == 200 else None


async def test_a_client_that_stops_reading_is_dropped_and_its_connection_freed(
    export_client: Client, hanging: Hanging, bulky: Seeded
) -> None:
    """An export client that reads nothing for export_idle_timeout_s loses the export."""
    (token,) = analysts(bulky.dsn, 1)
    hanging.open(token)
    await eventually(lambda: in_transaction(bulky.dsn) == 1, 10, "the export under way")
    await eventually(lambda: in_transaction(bulky.dsn) == 0, 10, "the idle export dropped")
    body = await eventually(lambda: _complete_export(export_client, token), 10, "a new export")
    assert body.count(b"\n") == ROWS + 1
