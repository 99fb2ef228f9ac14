"""Hazard endpoints (隐患闭环): report, list, one with its steps, take a step, photos, counts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args

import psycopg
from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel

from api.auth import Permission
from api.routing import PREFIX, ApiError, Call, Route, json_response, not_found
from store import hazards as store
from store import registry
from supervision.hazard_loop import act, report
from supervision.hazards import REVIEW_STEPS, Action, Category, HazardError, Severity, State

MAX_PHOTO_BYTES = 5 * 1024 * 1024
# What a photo's first bytes say it is: the content type is taken from them, not the header.
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HazardQuery(_In):
    """Filters of GET /hazards."""

    unit: Id | None = None
    district: str | None = Field(default=None, max_length=100)
    state: Annotated[list[State], BeforeValidator(_comma_list)] | None = Field(
        default=None, description="comma-separated; default all"
    )
    overdue: bool | None = None
    limit: int = Field(default=200, ge=1, le=1000)


class HazardCreate(_In):
    """A hazard found at a unit; its deadline follows from its severity (the policy file)."""

    unit_id: Id
    device_id: Id | None = None
    category: Category
    severity: Severity
    description: str = Field(min_length=1, max_length=2000)
    responsible: str = Field(default="", max_length=200, description="who is to rectify it")


class HazardStep(_In):
    """A step: evidence (photos uploaded first, a comment), and who is responsible now."""

    comment: str = Field(default="", max_length=2000)
    photo_ids: list[int] = Field(default_factory=list, max_length=20)
    responsible: str | None = Field(default=None, max_length=200)


class CountsQuery(_In):
    """GET /hazards/counts: per unit, district or finder (grid worker, inspector, the data)."""

    group: Literal["unit", "district", "finder"] = "district"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


# The responses are the store's rows as they are (pydantic reads the dataclasses).
HazardOut = RootModel[store.HazardRow]


class HazardList(_Out):
    """Hazards, open ones by deadline first."""

    items: list[store.HazardRow]


class HazardDetail(_Out):
    """A hazard with its whole history."""

    hazard: store.HazardRow
    events: list[store.HazardEvent]


class PhotoOut(_Out):
    """A stored photo."""

    id: int
    content_type: str


class HazardCounts(_Out):
    """Counts per unit or district, most overdue first."""

    group: str
    rows: list[store.HazardCount]


async def list_hazards(call: Call) -> web.StreamResponse:
    """GET /hazards."""
    hq = call.q(HazardQuery)
    f = store.HazardFilter(hq.unit, hq.district, hq.state, hq.overdue, call.who.scope)
    rows = await call.state.db(store.search, f, hq.limit)
    return json_response(HazardList(items=rows))


async def create_hazard(call: Call) -> web.StreamResponse:
    """POST /hazards."""
    body = call.b(HazardCreate)
    if not call.who.sees_unit(body.unit_id):
        raise not_found(f"unit {body.unit_id}")

    def run(conn: psycopg.Connection[Any]) -> store.HazardRow | str | None:
        if not registry.unit_exists(conn, body.unit_id):
            return None
        device = registry.get_device(conn, body.device_id) if body.device_id else None
        if body.device_id is not None and (device is None or device.unit_id != body.unit_id):
            return f"device {body.device_id} is not a device of unit {body.unit_id}"
        return report(
            conn,
            call.state.options.hazards,
            unit_id=body.unit_id,
            category=body.category,
            severity=body.severity,
            description=body.description,
            found_by=call.who.name,
            device_id=body.device_id,
            responsible=body.responsible,
            now=dt.datetime.now(dt.UTC),
        )

    row = await call.state.db(run)
    if row is None:
        raise not_found(f"unit {body.unit_id}")
    if isinstance(row, str):
        raise ApiError(400, "bad_request", row)
    return json_response(HazardOut(row), status=201)


def _hazard_id(call: Call) -> int:
    return int(call.request.match_info["id"])


async def get_hazard(call: Call) -> web.StreamResponse:
    """GET /hazards/{id}."""
    hazard_id, scope = _hazard_id(call), call.who.scope

    def load(conn: psycopg.Connection[Any]) -> HazardDetail | None:
        h = store.get(conn, hazard_id, scope)
        if h is None:
            return None
        return HazardDetail(hazard=h, events=store.events(conn, hazard_id))

    detail = await call.state.db(load)
    if detail is None:
        raise not_found(f"hazard {hazard_id}")
    return json_response(detail)


async def step_hazard(call: Call) -> web.StreamResponse:
    """POST /hazards/{id}/{action}."""
    hazard_id, scope = _hazard_id(call), call.who.scope
    action: Action = call.request.match_info["action"]  # type: ignore[assignment]
    body = call.b(HazardStep)
    if action in REVIEW_STEPS and not call.who.may(Permission.HAZARDS_REVIEW):
        raise ApiError(403, "forbidden", f"{action} is a reviewer's step (hazards:review)")

    def run(conn: psycopg.Connection[Any]) -> store.HazardRow | str | None:
        if store.get(conn, hazard_id, scope) is None:
            return None
        try:
            return act(
                conn,
                call.state.options.hazards,
                hazard_id,
                action,
                call.who.name,
                comment=body.comment,
                photo_ids=body.photo_ids,
                responsible=body.responsible,
            )
        except HazardError as exc:
            return str(exc)

    out = await call.state.db(run)
    if out is None:
        raise not_found(f"hazard {hazard_id}")
    if isinstance(out, str):
        raise ApiError(409, "conflict", out)
    return json_response(HazardOut(out))


async def _read_photo(request: web.Request) -> bytes:
    """The body, at most MAX_PHOTO_BYTES (read as it comes: a 4G upload is not held whole
    past the limit)."""
    if (request.content_length or 0) > MAX_PHOTO_BYTES:
        raise ApiError(413, "too_large", f"a photo may be at most {MAX_PHOTO_BYTES >> 20} MB")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_PHOTO_BYTES:
            raise ApiError(413, "too_large", f"a photo may be at most {MAX_PHOTO_BYTES >> 20} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def _kind(data: bytes) -> str | None:
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


async def add_photo(call: Call) -> web.StreamResponse:
    """POST /hazards/{id}/photos."""
    hazard_id, scope = _hazard_id(call), call.who.scope
    data = await _read_photo(call.request)
    kind = _kind(data)
    if kind is None:
        raise ApiError(415, "unsupported", "send the photo's bytes: JPEG, PNG or WebP")

    def run(conn: psycopg.Connection[Any]) -> int | str | None:
        with conn.transaction():
            h = store.get(conn, hazard_id, scope)
            if h is None:
                return None
            if h.state == "closed":
                return f"hazard {hazard_id} is closed: its evidence is kept as it was"
            photo_id = store.add_photo(conn, hazard_id, kind, data, call.who.name)
            store.record(conn, hazard_id, "photo", call.who.name, photo_ids=[photo_id])
            return photo_id

    photo_id = await call.state.db(run)
    if photo_id is None:
        raise not_found(f"hazard {hazard_id}")
    if isinstance(photo_id, str):
        raise ApiError(409, "conflict", photo_id)
    return json_response(PhotoOut(id=photo_id, content_type=kind), status=201)


async def get_photo(call: Call) -> web.StreamResponse:
    """GET /hazards/{id}/photos/{photo}."""
    hazard_id, scope = _hazard_id(call), call.who.scope
    photo_id = int(call.request.match_info["photo"])

    def load(conn: psycopg.Connection[Any]) -> tuple[str, bytes] | None:
        if store.get(conn, hazard_id, scope) is None:
            return None
        return store.photo(conn, hazard_id, photo_id)

    found = await call.state.db(load)
    if found is None:
        raise not_found(f"photo {photo_id} of hazard {hazard_id}")
    kind, data = found
    return web.Response(
        body=data,
        content_type=kind,
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


async def hazard_counts(call: Call) -> web.StreamResponse:
    """GET /hazards/counts."""
    group = call.q(CountsQuery).group
    rows = await call.state.db(store.counts, group, call.who.scope)
    return json_response(HazardCounts(group=group, rows=rows))


_ID = {"id": "the hazard's id"}
_ACTIONS = "|".join(get_args(Action))
ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/hazards/counts",
        hazard_counts,
        "Hazards per district, unit or finder (who found them: each grid worker and "
        "inspector, and the data): found, open, closed (rectified), overdue",
        Permission.HAZARDS_READ,
        "hazards",
        query=CountsQuery,
        response=HazardCounts,
    ),
    Route(
        "GET",
        f"{PREFIX}/hazards",
        list_hazards,
        "Hazards (unit, district, state, overdue), open ones by deadline first",
        Permission.HAZARDS_READ,
        "hazards",
        query=HazardQuery,
        response=HazardList,
    ),
    Route(
        "POST",
        f"{PREFIX}/hazards",
        create_hazard,
        "Report a hazard (found_by: the token's name); its deadline follows its severity",
        Permission.HAZARDS_ACT,
        "hazards",
        body=HazardCreate,
        response=HazardOut,
        status=201,
    ),
    Route(
        "GET",
        f"{PREFIX}/hazards/{{id:\\d+}}",
        get_hazard,
        "One hazard with every step (who, when, comment, photos)",
        Permission.HAZARDS_READ,
        "hazards",
        response=HazardDetail,
        path_params=_ID,
    ),
    Route(
        "POST",
        f"{PREFIX}/hazards/{{id:\\d+}}/photos",
        add_photo,
        "Add a photo (the body: JPEG, PNG or WebP bytes, at most 5 MB); returns its id, to "
        "name in a step's photo_ids",
        Permission.HAZARDS_ACT,
        "hazards",
        response=PhotoOut,
        status=201,
        path_params=_ID,
    ),
    Route(
        "GET",
        f"{PREFIX}/hazards/{{id:\\d+}}/photos/{{photo:\\d+}}",
        get_photo,
        "A photo of the hazard",
        Permission.HAZARDS_READ,
        "hazards",
        media="image/jpeg",
        path_params={**_ID, "photo": "the photo's id"},
    ),
    Route(
        "POST",
        f"{PREFIX}/hazards/{{id:\\d+}}/{{action:(?:{_ACTIONS})}}",
        step_hazard,
        "A step: notify (督促: the unit's people are told), rectify (跟踪), submit (with a photo "
        "or comment), review / reject (hazards:review; reject says why), close (销案, "
        "hazards:review)",
        Permission.HAZARDS_ACT,
        "hazards",
        body=HazardStep,
        response=HazardOut,
        path_params={**_ID, "action": "notify, rectify, submit, review, reject or close"},
    ),
]
