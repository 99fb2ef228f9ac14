"""GET /stream: alert changes as Server-Sent Events, resumable with Last-Event-ID.

One feed per app follows alert_events in commit order (stream_seq, see migration 0006): it
wakes on NOTIFY, or polls every stream_poll_s anyway, and hands each change to every
subscriber whose units it concerns. A client that reconnects with the last id it saw gets what
it missed from the database first, then the live changes; nothing is skipped or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog
from aiohttp import web

from api.auth import Permission
from api.models import AlertOut, StreamEvent, StreamQuery
from api.routing import PREFIX, ApiError, Call, Route
from api.state import ApiState
from store import alert_queries as q

log = structlog.get_logger("api.stream")
BATCH = 500
MAX_REPLAY = 5_000
QUEUE = 1_000
CHANNEL = "firesentry_alert_events"


class Subscriber:
    """One open stream: its queue (None ends it) and the units it may see."""

    def __init__(self, scope: Sequence[str] | None) -> None:
        self.queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(QUEUE)
        self.scope = None if scope is None else frozenset(scope)
        # Set when the client fell too far behind: it is sent what it has, then reconnects.
        self.overflow = False

    def wants(self, ev: StreamEvent) -> bool:
        """Tell whether the event concerns the subscriber's units."""
        return self.scope is None or ev.alert.unit_id in self.scope


async def load_events(
    state: ApiState, after: int, scope: Sequence[str] | None
) -> list[StreamEvent]:
    """Committed changes after feed position `after`, with each alert as it is now."""

    def load(conn: psycopg.Connection[Any]) -> list[StreamEvent]:
        rows = q.events_since(conn, after, scope, BATCH)
        alerts = q.alerts_by_id(conn, sorted({r.alert_id for r in rows}))
        return [
            StreamEvent(
                stream_id=r.stream_seq or 0,
                event_id=r.id,
                kind=r.kind,
                actor=r.actor,
                at=r.at,
                comment=r.comment,
                alert=AlertOut.of(alerts[r.alert_id]),
            )
            for r in rows
            if r.alert_id in alerts
        ]

    return await state.db(load)


class AlertFeed:
    """Follows the change feed and fans it out to the open streams."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        # The last change handed out; None until the database has been reached.
        self.position: int | None = None
        self._subs: set[Subscriber] = set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following from the newest change."""
        with contextlib.suppress(psycopg.Error, OSError):
            self.position = await self.state.db(q.last_stream_seq)
        self._task = asyncio.create_task(self._run(), name="alert-feed")

    async def stop(self) -> None:
        """End every open stream and stop following."""
        self._stopping.set()
        for sub in list(self._subs):
            while sub.queue.full():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, scope: Sequence[str] | None) -> Subscriber:
        """Open a subscription (before replaying, so that nothing falls in between)."""
        sub = Subscriber(scope)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Close a subscription."""
        self._subs.discard(sub)

    def _publish(self, ev: StreamEvent) -> None:
        for sub in self._subs:
            if sub.overflow or not sub.wants(ev):
                continue
            try:
                sub.queue.put_nowait(ev)
            except asyncio.QueueFull:
                sub.overflow = True

    async def poll(self) -> None:
        """Hand out everything committed since the last poll."""
        while True:
            if self._stopping.is_set():
                return
            if self.position is None:
                # The database was down at start: begin at the newest change.
                self.position = await self.state.db(q.last_stream_seq)
                return
            events = await load_events(self.state, self.position, None)
            position = self.position
            for ev in events:
                self._publish(ev)
                position = max(position, ev.stream_id)
            self.position = position
            if len(events) < BATCH:
                return

    async def _run(self) -> None:
        opts = self.state.options
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    opts.dsn, autocommit=True, application_name="firesentry-api-feed"
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stopping.is_set():
                        await self.poll()
                        async for _ in conn.notifies(timeout=opts.stream_poll_s, stop_after=1):
                            pass
            except (psycopg.Error, OSError) as exc:
                log.warning("alert feed lost the database; retrying", error=str(exc)[:200])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)


def _frame(event: str, ident: int, data: str) -> bytes:
    return f"id: {ident}\nevent: {event}\ndata: {data}\n\n".encode()


def _last_event_id(call: Call) -> int | None:
    header = call.request.headers.get("Last-Event-ID")
    if header is not None and header.strip():
        try:
            value = int(header)
        except ValueError:
            value = -1
        if value < 0:
            raise ApiError(400, "bad_request", "Last-Event-ID must be an id this stream sent")
        return value
    return call.q(StreamQuery).last_event_id


async def stream(call: Call) -> web.StreamResponse:
    """GET /stream."""
    last = _last_event_id(call)
    state, scope = call.state, call.who.scope
    feed = state.feed
    if feed is None:
        raise ApiError(503, "unavailable", "the alert feed is not running")
    sub = feed.subscribe(scope)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await resp.prepare(call.request)
        await resp.write(b"retry: 2000\n\n")
        if last is None:
            last = feed.position
            if last is None:
                last = await state.db(q.last_stream_seq)
        else:
            replayed = 0
            while True:
                events = await load_events(state, last, scope)
                for ev in events:
                    await resp.write(
                        _frame("alert", ev.stream_id, ev.model_dump_json(by_alias=True))
                    )
                    last = ev.stream_id
                replayed += len(events)
                if len(events) < BATCH:
                    break
                if replayed >= MAX_REPLAY:
                    # Too far behind to catch up event by event: reload the lists instead.
                    last = max(feed.position or 0, last)
                    await resp.write(_frame("reset", last, "{}"))
                    break
        await resp.write(_frame("ready", last, f'{{"stream_id": {last}}}'))
        keepalive = state.options.stream_keepalive_s
        while True:
            if sub.overflow and sub.queue.empty():
                break
            try:
                live = await asyncio.wait_for(sub.queue.get(), keepalive)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if live is None:
                break
            if live.stream_id <= last:
                continue
            await resp.write(_frame("alert", live.stream_id, live.model_dump_json(by_alias=True)))
            last = live.stream_id
    except ConnectionResetError:
        pass  # the client went away
    finally:
        feed.unsubscribe(sub)
    return resp


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/stream",
        stream,
        "Alert changes as Server-Sent Events (event: alert, data: StreamEvent); send "
        "Last-Event-ID to resume after the last id received",
        Permission.ALERTS_READ,
        "alerts",
        query=StreamQuery,
        response=StreamEvent,
        media="text/event-stream",
    ),
]
