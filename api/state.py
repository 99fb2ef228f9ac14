"""What the handlers share: options, the connection pool (store functions run in threads)."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from alerts.fire_119 import Fire119Options
from api.exports import ExportSlots
from api.throttle import FailedAuth, KnownTokens
from rules.model import RuleFile
from supervision.hazard_loop import HazardOptions
from supervision.inspections import Checklist, load_checklist
from supervision.model import RiskModel, load_model
from supervision.unit_code_pdf import find_font

if TYPE_CHECKING:
    from api.stream import AlertFeed

P = ParamSpec("P")
T = TypeVar("T")
STATIC_DIR = Path(__file__).with_name("static")


@dataclass(frozen=True, slots=True)
class ReceiptAuth:
    """How an SMS provider's delivery receipts prove they are its: Twilio signs with the
    auth token over callback_url; Aliyun's push URL carries a secret token; a generic gateway
    sends its bearer token."""

    kind: str
    secret: str
    callback_url: str = ""


@dataclass(frozen=True, slots=True)
class MapTiles:
    """A tile server: its URL template ({z}/{x}/{y}), attribution and deepest zoom."""

    url: str
    attribution: str = ""
    max_zoom: int = 18

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the tiles, for the console's content security policy."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """How the API reaches its database and broker, and its limits."""

    dsn: str
    mqtt_host: str
    mqtt_port: int
    rules: RuleFile
    # The four-colour grade's model (the shipped one when the caller gives none).
    risk_model: RiskModel = field(default_factory=load_model)
    # The hazard loop's policy, and the channels its messages may use.
    hazards: HazardOptions = field(default_factory=HazardOptions)
    # What an inspection at a unit answers (扫码检查).
    checklist: Checklist = field(default_factory=load_checklist)
    # The map (一张图): Leaflet's files (Debian's libjs-leaflet; none there: the console draws
    # its plain map), and the tile source (none by default, as on a closed network).
    map_library_dir: Path | None = Path("/usr/share/javascript/leaflet")
    map_tiles: MapTiles | None = None
    # The local time of reports' days and months (the routing file's timezone).
    timezone: str = "Asia/Shanghai"
    # Forwarding confirmed fires to 119 (none configured by default).
    fire_119: Fire119Options = field(default_factory=Fire119Options)
    # The CJK font of the PDF notices and sheets (none installed: those answer 503).
    pdf_font: Path | None = field(default_factory=find_font)
    # The address units' QR codes and notices point at (api.public_url).
    public_url: str = "http://127.0.0.1:8080"
    pool_max: int = 8
    static_dir: Path = STATIC_DIR
    # The change feed: how long to wait for a NOTIFY before polling anyway.
    stream_poll_s: float = 0.5
    stream_keepalive_s: float = 15.0
    # libpq's connect_timeout (whole seconds, at least 2) of the feed's LISTEN connection.
    feed_connect_timeout_s: int = 3
    # How long a request waits for a free database connection.
    pool_timeout_s: float = 5.0
    probe_timeout_s: float = 2.0
    # Readiness: an engine report older than this is stale; lag and outbox age limits.
    ready_stale_after_s: float = 10.0
    ready_max_lag_s: float = 30.0
    ready_max_outbox_age_s: float = 120.0
    # Rows per FETCH of the CSV export's server-side cursor.
    export_chunk: int = 5_000
    # Exports run on a pool of their own, so that analysts can never take the control room's
    # connections; each token runs so many at once; a client that reads nothing this long is
    # dropped and its connection returned.
    export_pool_max: int = 2
    export_per_token: int = 1
    export_idle_timeout_s: float = 30.0
    # An SSE client that takes no bytes this long is dropped (its queue would only grow).
    stream_idle_timeout_s: float = 60.0
    # How often open streams check that their token is still live (not revoked, not expired).
    stream_token_check_s: float = 2.0
    pool_reconnect_timeout_s: float = 5.0
    # Failed authentications per client address: beyond the limit in the window, 429.
    auth_fail_limit: int = 20
    auth_fail_window_s: float = 60.0
    # SMS providers whose delivery receipts POST /receipts/sms/{name} takes, by name.
    sms_receipts: Mapping[str, ReceiptAuth] = field(default_factory=dict)


def _pool(options: ApiOptions, name: str, min_size: int, max_size: int) -> ConnectionPool:
    """An autocommit pool, opened with the app; its connections say firesentry-<name>."""
    return ConnectionPool(
        options.dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "application_name": f"firesentry-{name}"},
        timeout=options.pool_timeout_s,
        # psycopg_pool retries a failed connection with a doubling delay for reconnect_timeout
        # (default 300 s) before a new attempt may start: after a 30 s outage the API then
        # stayed without connections for up to another 30 s. Giving up after a few seconds
        # lets the next request start a fresh attempt at once.
        reconnect_timeout=options.pool_reconnect_timeout_s,
        open=False,
        name=name,
    )


class ApiState:
    """The pool and the feed of one running app."""

    def __init__(self, options: ApiOptions) -> None:
        self.options = options
        self.pool = _pool(options, "api", 1, options.pool_max)
        # No connection is kept open for exports when none runs (min_size 0).
        self.export_pool = _pool(options, "api-export", 0, options.export_pool_max)
        # The exports' blocking fetches get threads of their own, too: a slow export never
        # holds a thread the board's requests are waiting for.
        self.export_threads = ThreadPoolExecutor(
            options.export_pool_max, thread_name_prefix="api-export"
        )
        self.exports = ExportSlots(options.export_pool_max, options.export_per_token)
        self.failed_auth = FailedAuth(options.auth_fail_limit, options.auth_fail_window_s)
        self.known_tokens = KnownTokens()
        self.feed: AlertFeed | None = None
        self.bucket_function: str | None = None

    def open(self) -> None:
        """Open the pools without waiting for the database (readyz tells whether it is there)."""
        self.pool.open(wait=False)
        self.export_pool.open(wait=False)

    def close(self) -> None:
        """Close every connection."""
        self.export_pool.close()
        self.pool.close()
        self.export_threads.shutdown(wait=False, cancel_futures=True)

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
