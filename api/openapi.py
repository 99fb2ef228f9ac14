"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api.auth import ROLE_PERMISSIONS
from api.models import Error
from api.routing import Route

_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "invalid parameters or body (every invalid field is listed)",
    "401": "no token, or an unknown, revoked or expired one",
    "403": "the token's role may not do this, or the unit is outside its scope",
    "404": "no such resource (or outside the token's units)",
    "409": "the alert is not in a state that allows the action",
    "429": "too many failed authentications from this address (Retry-After says how long), "
    "or, for an export, the token already runs its exports at once",
    "503": "the database is unavailable (for an export: every export slot is in use)",
}


def openapi_path(path: str) -> str:
    """An aiohttp path (`{id:\\d+}`) as an OpenAPI path (`{id}`)."""
    return _PATH_PARAM.sub(r"{\1}", path)


def _roles(route: Route) -> list[str]:
    if route.permission is None:
        return sorted(ROLE_PERMISSIONS)
    return sorted(r for r, perms in ROLE_PERMISSIONS.items() if route.permission in perms)


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "description": desc, "schema": {}}
        for name, desc in route.path_params.items()
    ]
    for p in params:
        p["schema"] = {"type": "integer"} if "\\d+" in route.path else {"type": "string"}
    if route.query is None:
        return params
    schema = route.query.model_json_schema(mode="validation", ref_template=_REF)
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", None)
        prop.pop("title", None)
        entry: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            entry["description"] = description
        params.append(entry)
    return params


def openapi_document(routes: list[Route], version: str) -> dict[str, Any]:
    """The whole document; every path and schema comes from `routes`."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Error, "serialization")]
    for r in routes:
        if r.response is not None:
            wanted.append((r.response, "serialization"))
        if r.body is not None:
            wanted.append((r.body, "validation"))
        if r.query is not None:
            wanted.append((r.query, "validation"))
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        content: dict[str, Any]
        if r.response is not None and r.media == "application/json":
            content = {r.media: {"schema": refs[(r.response, "serialization")]}}
        elif r.response is not None:
            content = {
                r.media: {
                    "schema": {"type": "string"},
                    "x-event-data": refs[(r.response, "serialization")],
                }
            }
        else:
            content = {r.media: {"schema": {"type": "string"}}}
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.handler.__name__,
            "tags": [r.tag],
            "parameters": _parameters(r),
            "responses": {str(r.status): {"description": "success", "content": content}},
        }
        if r.authenticated:
            op["security"] = [{"bearer": []}]
            op["description"] = (
                "Roles: "
                + ", ".join(_roles(r))
                + (f" (permission `{r.permission}`)." if r.permission else ".")
            )
        if r.body is not None:
            op["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": refs[(r.body, "validation")]}},
            }
        error_ref = refs[(Error, "serialization")]
        for code, text in _ERRORS.items():
            if code in ("401", "403", "429") and not r.authenticated:
                continue
            op["responses"][code] = {
                "description": text,
                "content": {"application/json": {"schema": error_ref}},
            }
        paths.setdefault(openapi_path(r.path), {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "firesentry API",
            "version": version,
            "description": (
                "Operator and analyst API of firesentry. Send `Authorization: Bearer <token>` "
                "(`firesentry tokens create --role operator|analyst|admin|display [--unit ID ...]`). "
                "A unit-scoped token sees only its units."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
