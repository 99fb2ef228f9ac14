"""Wiring of the API into the commands: options from Settings, `run` with the API beside it."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
import structlog

from alerts.routing import load_routing
from api.server import ApiServer
from api.state import ApiOptions, MapTiles, ReceiptAuth
from firesentry.channels import fire_119_options, hazard_options
from firesentry.config import Settings
from firesentry.embedded import Endpoints
from rules.loader import load_rules
from store import tokens as store_tokens
from supervision.inspections import load_checklist
from supervision.model import load_model
from supervision.unit_code_pdf import find_font

log = structlog.get_logger("firesentry")
DEMO_TOKEN_NAME = "demo operator"

if TYPE_CHECKING:
    from firesentry.app import WorkerState


def public_url(settings: Settings) -> str:
    """The console's address as people reach it (what units' QR codes open)."""
    return settings.api.public_url or f"http://{settings.api.host}:{settings.api.port}"


def api_options(settings: Settings, ep: Endpoints) -> ApiOptions:
    """What the API needs to know, from the one configuration."""
    timezone = load_routing(settings.notify.routing_file).timezone
    return ApiOptions(
        dsn=ep.dsn(),
        mqtt_host=ep.mqtt_host,
        mqtt_port=ep.mqtt_port,
        rules=load_rules(settings.rules.file),
        risk_model=load_model(settings.supervision.risk_model),
        checklist=load_checklist(settings.supervision.inspection_checklist),
        timezone=timezone,
        map_library_dir=settings.api.map_library_dir,
        map_tiles=MapTiles(t.url, t.attribution, t.max_zoom)
        if (t := settings.api.map_tiles)
        else None,
        fire_119=fire_119_options(settings, timezone),
        hazards=hazard_options(settings, timezone),
        public_url=public_url(settings),
        pdf_font=find_font(settings.api.pdf_font),
        pool_max=settings.api.pool_max,
        ready_stale_after_s=settings.api.ready_stale_after_s,
        ready_max_lag_s=settings.api.ready_max_lag_s,
        ready_max_outbox_age_s=settings.api.ready_max_outbox_age_s,
        export_pool_max=settings.api.export_pool_max,
        export_per_token=settings.api.export_per_token,
        export_idle_timeout_s=settings.api.export_idle_timeout_s,
        stream_idle_timeout_s=settings.api.stream_idle_timeout_s,
        stream_token_check_s=settings.api.stream_token_check_s,
        auth_fail_limit=settings.api.auth_fail_limit,
        auth_fail_window_s=settings.api.auth_fail_window_s,
        sms_receipts=sms_receipts(settings),
    )


def sms_receipts(settings: Settings) -> dict[str, ReceiptAuth]:
    """The SMS providers that send delivery receipts, and what authenticates each."""
    out = {}
    for name, c in settings.notify.sms.items():
        if not c.receipts:
            continue
        secret = {"generic": c.token, "aliyun": c.receipt_token, "twilio": c.auth_token}[c.kind]
        value = secret.get_secret_value() if secret is not None else ""
        out[name] = ReceiptAuth(c.kind, value, c.status_callback or "")
    return out


def api_probe(server: ApiServer) -> Callable[[], WorkerState]:
    """How the engine's watchdog sees an in-process API server: its thread alive, its error."""
    from firesentry.app import WorkerState

    def probe() -> WorkerState:
        # ApiServer keeps its thread and the exception that ended it to itself (api/server.py
        # has no public accessor yet); read them here, in the one place that needs them.
        thread = server._thread
        return WorkerState(thread is not None and thread.is_alive(), server._error)

    return probe


def start_api(settings: Settings, ep: Endpoints, *, any_port_if_taken: bool = False) -> ApiServer:
    """Serve the API as configured; on a taken port, fail (or take a free one if asked)."""
    cfg = settings.api
    opts = api_options(settings, ep)
    try:
        return ApiServer(opts, cfg.host, cfg.port).start()
    except OSError as exc:
        if not (any_port_if_taken and exc.errno == errno.EADDRINUSE):
            raise OSError(
                exc.errno,
                f"the API cannot listen on {cfg.host}:{cfg.port} ({exc.strerror}); set api.port "
                "(FIRESENTRY_API__PORT) to a free port, or api.enabled: false",
            ) from exc
        log.warning("api port taken; using a free one", port=cfg.port)
        return ApiServer(opts, cfg.host, 0).start()


def serve(settings: Settings, ep: Endpoints) -> int:
    """`firesentry run`: the engine (and the API when enabled) until a signal; 70: a worker died."""
    from firesentry.app import Engine

    engine = Engine(settings, ep)
    try:
        api = start_api(settings, ep) if settings.api.enabled else None
    except OSError as exc:
        print(f"firesentry: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if api is not None:
        engine.watch("api", api_probe(api))
    try:
        return engine.run_until_signal()
    finally:
        if api is not None:
            api.stop()


def start_demo_console(settings: Settings, ep: Endpoints) -> tuple[ApiServer, str] | None:
    """The API for the demo, with a fresh operator token; (server, console URL with the token)."""
    if not settings.api.enabled:
        return None
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        for old in store_tokens.list_tokens(conn):
            if old.name == DEMO_TOKEN_NAME:
                store_tokens.revoke(conn, old.id)
        _, token = store_tokens.create_token(conn, DEMO_TOKEN_NAME, "operator")
    server = start_api(settings, ep, any_port_if_taken=True)
    return server, f"{server.url}/#token={token}"
