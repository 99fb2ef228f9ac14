"""The route table's shape, the wrapper that authenticates and validates, and JSON errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
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


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="firesentry"'}
NO_TOKEN = "send 'Authorization: Bearer <token>' (`firesentry tokens create` makes one)"
BAD_TOKEN = "unknown, revoked or expired token"


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(unmatched)"


def refuse(request: web.Request, reason: str, message: str) -> ApiError:
    """Count a failed authentication of the client's address; the 401, or 429 after a burst."""
    state = request.app[STATE]
    # The peer's address: X-Forwarded-For is not trusted, anyone could send one.
    address = request.remote or "unknown"
    verdict = state.failed_auth.failed(address)
    route = _route_name(request)
    if verdict.retry_after_s is None:
        # Never the token: not even its first characters (they would help a guesser).
        log.warning(
            "api authentication failed",
            address=address,
            route=route,
            reason=reason,
            failures=verdict.failures,
        )
        return ApiError(401, "unauthorized", message, headers=_CHALLENGE)
    if verdict.newly_throttled:
        log.warning(
            "api authentication throttled",
            address=address,
            route=route,
            failures=verdict.failures,
            window_s=state.failed_auth.window_s,
            retry_after_s=verdict.retry_after_s,
        )
    return ApiError(
        429,
        "too_many_requests",
        f"{verdict.failures} failed authentications from {address} within "
        f"{state.failed_auth.window_s:g} s; try again in {verdict.retry_after_s} s",
        headers={"Retry-After": str(verdict.retry_after_s)},
    )


async def _principal(request: web.Request) -> Principal:
    token = bearer(request.headers.get("Authorization"))
    if token is None:
        raise refuse(request, "no bearer token", NO_TOKEN)
    state = request.app[STATE]
    row = await state.db(store_tokens.lookup, token)
    return _confirmed(request, token, row)


def _confirmed(request: web.Request, token: str, row: store_tokens.TokenRow | None) -> Principal:
    known = request.app[STATE].known_tokens
    if row is None:
        known.forget(store_tokens.digest(token))
        raise refuse(request, "unknown, revoked or expired token", BAD_TOKEN)
    known.confirmed(store_tokens.digest(token))
    return Principal(row.id, row.name, row.role, row.units or None)


async def holds_token(request: web.Request, within_s: float) -> bool:
    """Tell whether the caller sent a live token (any role), for routes open to everyone.

    A bad token counts as a failed authentication but is answered as if none was sent. When
    the database cannot tell within within_s: whether it confirmed the token lately.
    """
    token = bearer(request.headers.get("Authorization"))
    if token is None:
        return False
    state = request.app[STATE]
    try:
        row = await asyncio.wait_for(state.db(store_tokens.lookup, token), within_s)
    except (TimeoutError, psycopg.Error, psycopg_pool.PoolTimeout, OSError):
        return state.known_tokens.recently_confirmed(store_tokens.digest(token))
    try:
        _confirmed(request, token, row)
    except ApiError:
        return False
    return True


def _unstorable(text: str) -> str | None:
    # PostgreSQL text cannot hold NUL; caught here, once, it is a 400 instead of a 500 deep in
    # whichever query meets it first.
    if "\x00" in text:
        return "contains a NUL byte (\\x00), which cannot be stored"
    return None


def _check_text(where: str, items: Iterable[tuple[str, Any]]) -> None:
    """400 naming the first field whose name or text (at any depth of a body) cannot be stored."""
    stack = [(k, v) for k, v in items]
    while stack:
        field_name, value = stack.pop(0)
        problem = _unstorable(field_name)
        if isinstance(value, str) and problem is None:
            problem = _unstorable(value)
        if problem is not None:
            shown = field_name.replace("\x00", "\\x00")
            raise ApiError(
                400,
                "bad_request",
                f"invalid {where}: {shown}: {problem}",
                [{"field": shown, "message": problem}],
            )
        if isinstance(value, dict):
            stack[:0] = [(f"{field_name}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            stack[:0] = [(f"{field_name}.{i}", v) for i, v in enumerate(value)]


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
        _check_text("path", request.match_info.items())
        raw_query = _query_dict(request)
        _check_text("parameters", raw_query.items())
        query: BaseModel | None = None
        if route.query is not None:
            try:
                query = route.query.model_validate(raw_query)
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
            if isinstance(data, dict):
                _check_text("body", data.items())
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
    route_name = _route_name(request)
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
