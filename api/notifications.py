"""Notifications for operators: the failed and given-up ones, and sending them again."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from aiohttp import web

from api.auth import Permission
from api.models import (
    NotificationList,
    NotificationQuery,
    OutboxRowOut,
    RetryBody,
    RetryOut,
)
from api.privacy import masked_delivery
from api.routing import PREFIX, Call, Route, json_response
from store import channels as store_channels
from store import notifications as store_notifications


async def list_notifications(call: Call) -> web.StreamResponse:
    """GET /notifications."""
    q = call.q(NotificationQuery)
    units = call.who.units
    rows = await call.state.db(
        lambda c: store_notifications.list_notifications(
            c, states=q.state, since=q.since, limit=q.limit, units=units
        )
    )
    clear = Permission.CONTACTS_READ in call.who.permissions
    items = [
        OutboxRowOut.model_validate(r).model_copy(
            update=masked_delivery(r.receiver, r.last_error, clear)
        )
        for r in rows
    ]
    return json_response(NotificationList(items=items))


async def retry(call: Call) -> web.StreamResponse:
    """POST /notifications/retry."""
    body = call.b(RetryBody)
    who, units = call.who.name, call.who.units
    since = body.since or dt.datetime.fromtimestamp(0, dt.UTC)

    def run(conn: psycopg.Connection[Any]) -> list[int]:
        with conn.transaction():
            queued = store_notifications.retry(
                conn,
                by=who,
                ids=body.ids,
                given_up_since=since if body.given_up else None,
                units=units,
            )
            if queued:
                store_channels.notify_outbox(conn)
        return queued

    queued = await call.state.db(run)
    return json_response(RetryOut(queued=queued, not_queued=sorted(set(body.ids) - set(queued))))


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/notifications",
        list_notifications,
        "Notifications by state (default failed and given_up), newest first; receivers masked "
        "without contacts:read",
        Permission.ALERTS_READ,
        "alerts",
        query=NotificationQuery,
        response=NotificationList,
    ),
    Route(
        "POST",
        f"{PREFIX}/notifications/retry",
        retry,
        "Send given-up (or cancelled) notifications again, by id or all given up since a time; "
        "the token's name is recorded on each row and in its alert's history",
        Permission.ALERTS_ACT,
        "alerts",
        body=RetryBody,
        response=RetryOut,
    ),
]
