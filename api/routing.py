"""The route table's shape, the wrapper that authenticates and validates, and JSON errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import psycopg_pool
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.auth import Permission, Principal, bearer
from api.state import ApiState
from store import instruments
from store import tokens as store_tokens

log = structlog.get_logger("api")
STATE = web.AppKey("firesentry_api_state", ApiState)
PREFIX = "/api/v1"
M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An answer other than 2xx, as JSON: {error, message, details}."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    """A 404 naming what was not found (or is outside the token's units)."""
    return ApiError(404, "not_found", f"no {what}")


@dataclass(frozen=True, slots=True)
class Call:
    """A validated request: the caller, its query and its body."""

    request: web.Request
    principal: Principal | None
    query: BaseModel | None
    body: BaseModel | None

    @property
    def state(self) -> ApiState:
        """The app's shared state."""
        return self.request.app[STATE]

    @property
    def who(self) -> Principal:
        """The authenticated caller."""
        assert self.principal is not None
        return self.principal

    def q(self, cls: type[M]) -> M:
        """The query, as the route's query model."""
        assert isinstance(self.query, cls)
        return self.query

    def b(self, cls: type[M]) -> M:
        """The body, as the route's body model."""
        assert isinstance(self.body, cls)
        return self.body


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: what it needs (permission, parameters) and what it answers."""

    method: str
    path: str  # as served, e.g. /api/v1/alerts/{id}
    handler: Handler
    summary: str
    permission: Permission | None
    tag: str
    authenticated: bool = True
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    media: str = "application/json"
    status: int = 200
    path_params: dict[str, str] = field(default_factory=dict)
    description: str = ""


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    """A pydantic model as a JSON answer (aliases applied: `from`, `zh-CN`)."""
    return web.Response(
        text=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
    )


def _query_dict(request: web.Request) -> dict[str, str]:
    q = request.query
    return {k: ",".join(q.getall(k)) for k in q}


def _validation_details(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in exc.errors(include_url=False):
        msg = str(e["msg"])
        msg = msg.removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown parameter"
        out.append({"field": ".".join(str(p) for p in e["loc"]), "message": msg})
    return out


def bad_request(exc: ValidationError, what: str) -> ApiError:
    """A 400 listing every invalid field."""
    details = _validation_details(exc)
    first = details[0] if details else {"field": "", "message": "invalid"}
    where = f"{first['field']}: " if first["field"] else ""
    return ApiError(400, "bad_request", f"invalid {what}: {where}{first['message']}", details)


async def _principal(request: web.Request) -> Principal:
    token = bearer(request.headers.get("Authorization"))
    challenge = {"WWW-Authenticate": 'Bearer realm="firesentry"'}
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "send 'Authorization: Bearer <token>' (`firesentry tokens create` makes one)",
            headers=challenge,
        )
    row = await request.app[STATE].db(store_tokens.lookup, token)
    if row is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token", headers=challenge)
    return Principal(row.id, row.name, row.role, row.units or None)


def endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of a route: authenticate, authorise, validate, then call it."""

    async def handle(request: web.Request) -> web.StreamResponse:
        principal = None
        if route.authenticated:
            principal = await _principal(request)
            if route.permission is not None and not principal.may(route.permission):
                raise ApiError(
                    403,
                    "forbidden",
                    f"a token with role {principal.role} may not do this ({route.permission})",
                )
        query: BaseModel | None = None
        if route.query is not None:
            try:
                query = route.query.model_validate(_query_dict(request))
            except ValidationError as exc:
                raise bad_request(exc, "parameters") from None
        elif request.query:
            raise ApiError(
                400, "bad_request", f"unknown parameters: {', '.join(sorted(request.query))}"
            )
        body: BaseModel | None = None
        if route.body is not None:
            raw = await request.read()
            try:
                data: Any = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise ApiError(400, "bad_request", "the body is not valid JSON") from None
            try:
                body = route.body.model_validate(data)
            except ValidationError as exc:
                raise bad_request(exc, "body") from None
        return await route.handler(Call(request, principal, query, body))

    return handle


def _error(status: int, error: str, message: str, details: Any = (), headers: Any = None) -> Any:
    return web.json_response(
        {"error": error, "message": message, "details": list(details)},
        status=status,
        headers=headers,
    )


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure of an API route as JSON; never a stack trace, never an HTML page."""
    resource = request.match_info.route.resource
    route_name = resource.canonical if resource is not None else "(unmatched)"
    try:
        resp = await handler(request)
    except ApiError as exc:
        resp = _error(exc.status, exc.error, exc.message, exc.details, exc.headers)
    except web.HTTPException as exc:
        if not request.path.startswith(PREFIX) or exc.status < 400:
            raise
        resp = _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except (psycopg_pool.PoolTimeout, psycopg.OperationalError) as exc:
        log.warning("database unavailable", path=request.path, error=str(exc).strip()[:200])
        resp = _error(503, "unavailable", "the database is unavailable; try again shortly")
    except Exception:
        log.exception("unhandled error in API handler", path=request.path)
        resp = _error(500, "internal", "internal error; the server log has the details")
    instruments.API_REQUESTS.labels(route_name, str(resp.status)).inc()
    return resp
