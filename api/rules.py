"""GET /rules: the rules the API was started with, with the names operators know them by."""

from __future__ import annotations

from aiohttp import web

from alerts.shape import Message
from api.auth import Permission
from api.models import RuleList, RuleOut
from api.routing import PREFIX, Call, Route, json_response


async def list_rules(call: Call) -> web.StreamResponse:
    """GET /rules."""
    items = [
        RuleOut(
            id=r.id,
            name=None if r.name is None else Message(en=r.name.en, zh_CN=r.name.zh_cn),
            severity=r.severity.value,
            kind=r.kind,
            metric=r.metric,
            event=None if r.event is None else r.event.value,
            device_type=None if r.device_type is None else r.device_type.value,
        )
        for r in call.state.options.rules.rules
    ]
    return json_response(RuleList(items=items))


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/rules",
        list_rules,
        "The rules: id, name (en, zh-CN), severity, kind, metric or event, device type",
        Permission.ALERTS_READ,
        "alerts",
        response=RuleList,
    ),
]
