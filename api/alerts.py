"""Alert endpoints: list, detail with history, acknowledge / resolve / verify / close."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from aiohttp import web

from alerts import actions
from alerts.actions import ActionError
from api import privacy
from api.auth import Permission
from api.models import (
    AlertDetail,
    AlertEventOut,
    AlertOut,
    AlertPage,
    AlertQuery,
    CloseBody,
    CommentBody,
    ContactOut,
    NotificationOut,
    VerifyBody,
    decode_cursor,
    encode_cursor,
)
from api.routing import PREFIX, ApiError, Call, Route, json_response, not_found
from store import alert_queries as q
from store.alerts import AlertView


def forbidden_unit(unit_id: str) -> ApiError:
    """A 403 for a unit outside the token's scope."""
    return ApiError(403, "forbidden", f"this token does not cover unit {unit_id}")


async def list_alerts(call: Call) -> web.StreamResponse:
    """GET /alerts."""
    aq = call.q(AlertQuery)
    if aq.unit is not None and not call.who.sees_unit(aq.unit):
        raise forbidden_unit(aq.unit)
    f = q.AlertFilter(
        states=aq.states(),
        severities=aq.severity,
        unit_id=aq.unit,
        device_id=aq.device,
        rule_id=aq.rule,
        district=aq.district,
        device_type=aq.device_type,
        opened_from=aq.start,
        opened_to=aq.end,
        scope=call.who.scope,
    )
    after = decode_cursor(aq.cursor) if aq.cursor else None
    items, nxt = await call.state.db(q.search_alerts, f, limit=aq.limit, after=after)
    return json_response(
        AlertPage(
            items=[AlertOut.of(a) for a in items],
            next_cursor=encode_cursor(*nxt) if nxt else None,
        )
    )


def contacts_out(contacts: list[q.UnitContact], clear: bool) -> list[ContactOut]:
    """A unit's contacts as the API shows them: masked unless the role calls people."""
    return [
        ContactOut(
            name=c.name,
            role=c.role,
            phone=c.phone if clear or not c.phone else privacy.mask_phone(c.phone),
            email=c.email if clear or not c.email else privacy.mask_address(c.email),
            district_wide=c.district_wide,
            masked=not clear,
        )
        for c in contacts
    ]


def _alert_id(call: Call) -> int:
    return int(call.request.match_info["id"])


async def get_alert(call: Call) -> web.StreamResponse:
    """GET /alerts/{id}."""
    alert_id, scope = _alert_id(call), call.who.scope
    # Phone numbers and e-mail addresses only for the roles that contact people.
    clear = call.who.may(Permission.CONTACTS_READ)

    def load(conn: psycopg.Connection[Any]) -> AlertDetail | None:
        a = q.get_alert_in_scope(conn, alert_id, scope)
        if a is None:
            return None
        return AlertDetail(
            alert=AlertOut.of(a),
            history=[AlertEventOut.model_validate(h) for h in q.history(conn, alert_id)],
            notifications=[
                NotificationOut.model_validate(n).model_copy(
                    update=privacy.masked_delivery(n.receiver, n.last_error, clear)
                )
                for n in q.notifications(conn, alert_id)
            ],
            contacts=contacts_out(q.unit_contacts(conn, [a.unit_id])[a.unit_id], clear),
        )

    detail = await call.state.db(load)
    if detail is None:
        raise not_found(f"alert {alert_id}")
    return json_response(detail)


Action = Callable[[psycopg.Connection[Any], int, str], AlertView]


async def _act(call: Call, action: Action) -> web.StreamResponse:
    alert_id, scope = _alert_id(call), call.who.scope

    def run(conn: psycopg.Connection[Any]) -> AlertView | str | None:
        if q.get_alert_in_scope(conn, alert_id, scope) is None:
            return None
        try:
            return action(conn, alert_id, call.who.name)
        except ActionError as exc:
            return str(exc)

    out = await call.state.db(run)
    if out is None:
        raise not_found(f"alert {alert_id}")
    if isinstance(out, str):
        raise ApiError(409, "conflict", out)
    return json_response(AlertOut.of(out))


async def ack(call: Call) -> web.StreamResponse:
    """POST /alerts/{id}/ack."""
    body = call.b(CommentBody)
    return await _act(call, lambda c, i, who: actions.acknowledge(c, i, who, body.comment))


async def resolve(call: Call) -> web.StreamResponse:
    """POST /alerts/{id}/resolve."""
    body = call.b(CommentBody)
    return await _act(call, lambda c, i, who: actions.resolve(c, i, who, body.comment))


async def close(call: Call) -> web.StreamResponse:
    """POST /alerts/{id}/close."""
    body = call.b(CloseBody)
    return await _act(
        call,
        lambda c, i, who: actions.close(
            c,
            i,
            who,
            verification=body.verification,
            cause=body.cause,
            comment=body.comment,
            fire_119_options=call.state.options.fire_119,
        ),
    )


async def verify(call: Call) -> web.StreamResponse:
    """POST /alerts/{id}/verify."""
    body = call.b(VerifyBody)
    return await _act(
        call,
        lambda c, i, who: actions.verify(
            c,
            i,
            who,
            verification=body.verification,
            cause=body.cause,
            comment=body.comment,
            fire_119_options=call.state.options.fire_119,
        ),
    )


_ID = {"id": "the alert's id"}
ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/alerts",
        list_alerts,
        "Alerts, newest first, filtered (state incl. closed, unit, device, rule, when opened); "
        "keyset pages via next_cursor",
        Permission.ALERTS_READ,
        "alerts",
        query=AlertQuery,
        response=AlertPage,
    ),
    Route(
        "GET",
        f"{PREFIX}/alerts/{{id:\\d+}}",
        get_alert,
        "One alert (closed ones too) with its whole history (alert_events), its notifications "
        "and its unit's contacts (phone and e-mail masked without contacts:read)",
        Permission.ALERTS_READ,
        "alerts",
        response=AlertDetail,
        path_params=_ID,
    ),
    Route(
        "POST",
        f"{PREFIX}/alerts/{{id:\\d+}}/ack",
        ack,
        "Acknowledge: escalation stops (actor: the token's name)",
        Permission.ALERTS_ACT,
        "alerts",
        body=CommentBody,
        response=AlertOut,
        path_params=_ID,
    ),
    Route(
        "POST",
        f"{PREFIX}/alerts/{{id:\\d+}}/resolve",
        resolve,
        "Mark resolved by hand",
        Permission.ALERTS_ACT,
        "alerts",
        body=CommentBody,
        response=AlertOut,
        path_params=_ID,
    ),
    Route(
        "POST",
        f"{PREFIX}/alerts/{{id:\\d+}}/verify",
        verify,
        "Verify (counts as acknowledging): confirmed_fire is forwarded to the 119 command "
        "centre when notify.fire_119 is configured; false_alarm needs a cause. Once only",
        Permission.ALERTS_ACT,
        "alerts",
        body=VerifyBody,
        response=AlertOut,
        path_params=_ID,
    ),
    Route(
        "POST",
        f"{PREFIX}/alerts/{{id:\\d+}}/close",
        close,
        "Close; a fire alarm must be verified, by /verify before or here (confirmed_fire, or "
        "false_alarm with a cause)",
        Permission.ALERTS_ACT,
        "alerts",
        body=CloseBody,
        response=AlertOut,
        path_params=_ID,
    ),
]
