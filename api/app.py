"""The aiohttp application: the route table, the console's static files, start and stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from api import (
    alerts,
    duty,
    hazards,
    inspections,
    map_config,
    notifications,
    ops,
    receipts,
    reports,
    rules,
    silences,
    stream,
    telemetry,
    unit_codes,
    units,
)
from api.openapi import openapi_document
from api.routing import PREFIX, STATE, Route, endpoint, errors_middleware
from api.state import ApiOptions, ApiState
from api.stream import AlertFeed
from supervision.unit_code import STYLE_HASH

ROUTES: list[Route] = [
    *alerts.ROUTES,
    *hazards.ROUTES,
    *inspections.ROUTES,
    *map_config.ROUTES,
    *duty.ROUTES,
    *reports.ROUTES,
    *rules.ROUTES,
    *notifications.ROUTES,
    *receipts.ROUTES,
    *silences.ROUTES,
    *stream.ROUTES,
    # Before units: /units/codes must not be taken for the unit called "codes".
    *unit_codes.ROUTES,
    *units.ROUTES,
    *telemetry.ROUTES,
    *ops.ROUTES,
]


# The console is plain files from this server: nothing from anywhere else may load (blob:
# images are hazard photos it fetched with its token), but the map's tiles from the tile
# server a city configured (api.map_tiles).
def csp(tile_origin: str | None = None) -> str:
    """The console's content security policy."""
    images = "'self' data: blob:" + (f" {tile_origin}" if tile_origin else "")
    # The printable pages' one style sheet, by its hash: a notice the console opens from a blob
    # is under this policy, and must print in its colours (supervision/unit_code.py).
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self' '{STYLE_HASH}'; "
        f"img-src {images}; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


POLICY = web.AppKey("firesentry_csp", str)


def _version() -> str:
    try:
        return version("firesentry")
    except PackageNotFoundError:  # pragma: no cover (not installed)
        return "0"


async def security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """No sniffing, no referrer, and a strict content security policy for the console.

    Set as each response is prepared (a signal, not a middleware) so that streamed answers
    (CSV, SSE, static files) and aiohttp's own error pages get them too. no-referrer: the
    console links nowhere that needs to know where a user came from, and a Referer would
    carry unit and device ids (and the API's host) to whatever a link points at.
    """
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if not request.path.startswith(PREFIX):
        resp.headers.setdefault("Content-Security-Policy", request.app[POLICY])


def build_app(options: ApiOptions) -> web.Application:
    """The API and the console as one aiohttp app (the pool opens when the app starts)."""
    app = web.Application(middlewares=[errors_middleware])
    app.on_response_prepare.append(security_headers)
    app[POLICY] = csp(options.map_tiles.origin if options.map_tiles else None)
    state = ApiState(options)
    app[STATE] = state
    for route in ROUTES:
        app.router.add_route(route.method, route.path, endpoint(route))
    doc = openapi_document(ROUTES, _version())

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.json_response(doc)

    index = options.static_dir / "index.html"

    async def console(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get("/", console)
    app.router.add_static("/static/", options.static_dir, append_version=False)
    lib = options.map_library_dir
    if lib is not None and (lib / "leaflet.esm.js").is_file():
        app.router.add_static("/vendor/leaflet/", lib, append_version=False)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_end_streams)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await asyncio.to_thread(state.open)
    state.feed = AlertFeed(state)
    await state.feed.start()
    yield
    await state.feed.stop()
    await asyncio.to_thread(state.close)


async def _end_streams(app: web.Application) -> None:
    # Open streams end before the server waits for its handlers to finish.
    feed = app[STATE].feed
    if feed is not None:
        await feed.stop()
