"""Silence endpoints: list, show, create (capped; critical scopes for admins) and end."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import psycopg
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from alerts.silences import SilenceError, SilenceRequest, create_silence, end_silence
from api.auth import Permission, Principal
from api.routing import PREFIX, ApiError, Call, Route, json_response
from store import silences as store_silences
from store.silences import SilenceRow

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="a unit or device id")]
SilenceState = Literal["pending", "active", "expired", "ended"]
_STATUS = {"invalid": 400, "forbidden": 403, "not_found": 404, "conflict": 409}
_ERROR = {"invalid": "bad_request", "forbidden": "forbidden", "not_found": "not_found"}


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SilenceQuery(BaseModel):
    """Filters of GET /silences."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Annotated[list[SilenceState], BeforeValidator(_comma_list)] = Field(
        default_factory=lambda: list[SilenceState](["pending", "active"]),
        description="comma-separated; default pending,active",
    )
    unit: Id | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class SilenceCreate(BaseModel):
    """A silence: a unit, a device and/or a rule; duration_min or ends_at (at most 90 days
    after now); a reason. Scopes that cover critical alerts need an admin token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: Id | None = None
    device_id: Id | None = None
    rule_id: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,63}$")
    starts_at: AwareDatetime | None = Field(default=None, description="default now")
    ends_at: AwareDatetime | None = None
    duration_min: int | None = Field(default=None, description="minutes from starts_at")
    reason: str = Field(max_length=500, description="who works on what; shown with the alerts")


class SilenceEnd(BaseModel):
    """Body of POST /silences/{id}/end (may be empty)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    comment: str = Field(default="", max_length=2000)


class SilenceOut(BaseModel):
    """A silence, who made it and when, whether (and by whom) it was ended, what it mutes."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    unit_id: str | None
    device_id: str | None
    rule_id: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    author: str
    reason: str
    created_at: dt.datetime
    covers_critical: bool = Field(
        description="may mute critical alerts (they still reach the control room, marked)"
    )
    state: SilenceState
    ended_at: dt.datetime | None
    ended_by: str | None
    end_comment: str
    alert_ids: list[int] = Field(description="alerts not yet closed that it muted")

    @classmethod
    def of(cls, s: SilenceRow) -> SilenceOut:
        """From the store's row (by attribute name)."""
        return cls.model_validate(s)


class SilenceList(BaseModel):
    """GET /silences: newest first."""

    model_config = ConfigDict(frozen=True)

    items: list[SilenceOut]


def _api_error(exc: SilenceError) -> ApiError:
    status = _STATUS[exc.kind]
    if exc.field is not None:
        return ApiError(
            status,
            _ERROR.get(exc.kind, "conflict"),
            f"invalid body: {exc.field}: {exc.message}",
            [{"field": exc.field, "message": exc.message}],
        )
    return ApiError(status, _ERROR.get(exc.kind, "conflict"), exc.message)


def _silence_id(call: Call) -> int:
    return int(call.request.match_info["id"])


async def list_silences(call: Call) -> web.StreamResponse:
    """GET /silences."""
    sq, who = call.q(SilenceQuery), call.who
    if sq.unit is not None and not who.sees_unit(sq.unit):
        raise ApiError(403, "forbidden", f"this token does not cover unit {sq.unit}")
    rows = await call.state.db(
        store_silences.search, states=sq.state, unit_id=sq.unit, scope=who.scope, limit=sq.limit
    )
    return json_response(SilenceList(items=[SilenceOut.of(s) for s in rows]))


async def get_silence(call: Call) -> web.StreamResponse:
    """GET /silences/{id}."""
    sid = _silence_id(call)
    row = await call.state.db(store_silences.get, sid, call.who.scope)
    if row is None:
        raise ApiError(404, "not_found", f"no silence {sid}")
    return json_response(SilenceOut.of(row))


def _is_admin(who: Principal) -> bool:
    return who.role == "admin"


async def post_silence(call: Call) -> web.StreamResponse:
    """POST /silences."""
    body, who = call.b(SilenceCreate), call.who
    req = SilenceRequest(
        body.reason,
        body.unit_id,
        body.device_id,
        body.rule_id,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        duration_min=body.duration_min,
    )
    rules = call.state.options.rules

    def run(conn: psycopg.Connection[Any]) -> SilenceRow:
        return create_silence(
            conn, req, author=who.name, admin=_is_admin(who), rules=rules, scope=who.scope
        )

    try:
        row = await call.state.db(run)
    except SilenceError as exc:
        raise _api_error(exc) from None
    return json_response(SilenceOut.of(row), status=201)


async def post_end(call: Call) -> web.StreamResponse:
    """POST /silences/{id}/end."""
    sid, body, who = _silence_id(call), call.b(SilenceEnd), call.who
    try:
        row = await call.state.db(
            end_silence, sid, actor=who.name, comment=body.comment, scope=who.scope
        )
    except SilenceError as exc:
        raise _api_error(exc) from None
    return json_response(SilenceOut.of(row))


_ID = {"id": "the silence's id"}
ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/silences",
        list_silences,
        "Silences, newest first (default: pending and active), within the token's units",
        Permission.ALERTS_READ,
        "silences",
        query=SilenceQuery,
        response=SilenceList,
    ),
    Route(
        "GET",
        f"{PREFIX}/silences/{{id:\\d+}}",
        get_silence,
        "One silence: who made it, when, why, whether it was ended, the alerts it muted",
        Permission.ALERTS_READ,
        "silences",
        response=SilenceOut,
        path_params=_ID,
    ),
    Route(
        "POST",
        f"{PREFIX}/silences",
        post_silence,
        "Mute a unit, device or rule for at most 90 days; critical scopes need an admin",
        Permission.ALERTS_ACT,
        "silences",
        body=SilenceCreate,
        response=SilenceOut,
        status=201,
        description=(
            "Alerts are still recorded and shown marked silenced. Critical alerts (fire alarms) "
            "still reach the control room (webhooks, robots, contacts with role control_room), "
            "marked silenced; the unit's other parties are muted."
        ),
    ),
    Route(
        "POST",
        f"{PREFIX}/silences/{{id:\\d+}}/end",
        post_end,
        "End a silence now (actor: the token's name); alerts still firing reach everyone",
        Permission.ALERTS_ACT,
        "silences",
        body=SilenceEnd,
        response=SilenceOut,
        path_params=_ID,
    ),
]
