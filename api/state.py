"""What the handlers share: options, the connection pool (store functions run in threads)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from rules.model import RuleFile

if TYPE_CHECKING:
    from api.stream import AlertFeed

P = ParamSpec("P")
T = TypeVar("T")
STATIC_DIR = Path(__file__).with_name("static")


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """How the API reaches its database and broker, and its limits."""

    dsn: str
    mqtt_host: str
    mqtt_port: int
    rules: RuleFile
    pool_max: int = 8
    static_dir: Path = STATIC_DIR
    # The change feed: how long to wait for a NOTIFY before polling anyway.
    stream_poll_s: float = 0.5
    stream_keepalive_s: float = 15.0
    # How long a request waits for a free database connection.
    pool_timeout_s: float = 5.0
    probe_timeout_s: float = 2.0
    # Readiness: an engine report older than this is stale; lag and outbox age limits.
    ready_stale_after_s: float = 10.0
    ready_max_lag_s: float = 30.0
    ready_max_outbox_age_s: float = 120.0
    # Rows per FETCH of the CSV export's server-side cursor.
    export_chunk: int = 5_000


class ApiState:
    """The pool and the feed of one running app."""

    def __init__(self, options: ApiOptions) -> None:
        self.options = options
        self.pool = ConnectionPool(
            options.dsn,
            min_size=1,
            max_size=options.pool_max,
            kwargs={"autocommit": True, "application_name": "firesentry-api"},
            timeout=options.pool_timeout_s,
            open=False,
            name="api",
        )
        self.feed: AlertFeed | None = None
        self.bucket_function: str | None = None

    def open(self) -> None:
        """Open the pool without waiting for the database (readyz tells whether it is there)."""
        self.pool.open(wait=False)

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()

    def _call(
        self,
        fn: Callable[Concatenate[psycopg.Connection[Any], P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        with self.pool.connection() as conn:
            return fn(conn, *args, **kwargs)

    async def db(
        self,
        fn: Callable[Concatenate[psycopg.Connection[Any], P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run a (blocking) store function on a pooled connection in a worker thread."""
        return await asyncio.to_thread(self._call, fn, *args, **kwargs)  # type: ignore[arg-type]
