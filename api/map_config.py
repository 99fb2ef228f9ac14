"""The map's settings for the console (一张图): whether Leaflet is served, and the tile source."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from api.auth import Permission
from api.routing import PREFIX, Call, Route, json_response


class TilesOut(BaseModel):
    """Where the map's tiles come from."""

    model_config = ConfigDict(frozen=True)

    url: str
    attribution: str
    max_zoom: int


class MapConfig(BaseModel):
    """library: Leaflet is served at /vendor/leaflet/ (else the console draws its plain map);
    tiles: none (a closed network: units on a blank ground) or the configured tile server."""

    model_config = ConfigDict(frozen=True)

    library: bool
    tiles: TilesOut | None


async def map_config(call: Call) -> web.StreamResponse:
    """GET /map."""
    o = call.state.options
    lib = o.map_library_dir
    t = o.map_tiles
    return json_response(
        MapConfig(
            library=lib is not None and (lib / "leaflet.esm.js").is_file(),
            tiles=TilesOut(url=t.url, attribution=t.attribution, max_zoom=t.max_zoom)
            if t
            else None,
        )
    )


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/map",
        map_config,
        "The console map's settings: whether Leaflet is served, and the tile source",
        Permission.UNITS_READ,
        "units",
        response=MapConfig,
    ),
]
