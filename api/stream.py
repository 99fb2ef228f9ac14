"""GET /stream: alert changes as Server-Sent Events, resumable with Last-Event-ID.

One feed per app follows alert_events in commit order (stream_seq, see migration 0006): it
wakes on NOTIFY, or polls every stream_poll_s anyway, and hands each change to every
subscriber whose units it concerns. A client that reconnects with the last id it saw gets what
it missed from the database first, then the live changes; nothing is skipped or repeated.

The stream also says whether the API reaches its database: the `ready` event's data has
`database` ("ok" or "down"), and an `event: status` (data {"database"}) follows each change,
so that a console never shows a board as live while nothing can reach it.

A stream is authorised when it opens and then again before every change it is handed, and at
least every stream_token_check_s: a token revoked or expired meanwhile gets a final
`event: end` naming why (data {"reason", "message"}), and the stream closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool
import structlog
from aiohttp import web

from api import exports
from api.auth import Permission
from api.models import AlertOut, StreamEvent, StreamQuery
from api.routing import PREFIX, ApiError, Call, Route
from api.state import ApiState
from store import alert_queries as q
from store import channels
from store import tokens as store_tokens

log = structlog.get_logger("api.stream")
BATCH = 500
MAX_REPLAY = 5_000
QUEUE = 1_000


# Why a stream ended, as its final `end` event says (token reasons from store/tokens.py).
END_MESSAGES = {
    store_tokens.REVOKED: "the token was revoked; this stream is closed",
    store_tokens.EXPIRED: "the token expired; this stream is closed",
    store_tokens.DELETED: "the token no longer exists; this stream is closed",
    "server_stopping": "the server is stopping; reconnect with Last-Event-ID",
    "too_far_behind": "this client fell too far behind; reconnect with Last-Event-ID",
}


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Whether the feed reaches the database ("ok" or "down"), handed to every stream."""

    database: str


class Subscriber:
    """One open stream: its token, its queue (None ends it) and the units it may see."""

    def __init__(self, scope: Sequence[str] | None, token_id: int) -> None:
        self.queue: asyncio.Queue[StreamEvent | FeedStatus | None] = asyncio.Queue(QUEUE)
        self.scope = None if scope is None else frozenset(scope)
        self.token_id = token_id
        # Set when the client fell too far behind: it is sent what it has, then reconnects.
        self.overflow = False
        # Why the stream must end now (a key of END_MESSAGES), once decided.
        self.ended: str | None = None

    def wants(self, ev: StreamEvent) -> bool:
        """Tell whether the event concerns the subscriber's units."""
        return self.scope is None or ev.alert.unit_id in self.scope

    def end(self, reason: str) -> None:
        """End the stream now: what is queued is dropped (a dead token gets nothing more)."""
        if self.ended is None:
            self.ended = reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


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
        # Whether the feed's last round trip to the database succeeded; None: not tried yet.
        self.database_ok: bool | None = None
        self._subs: set[Subscriber] = set()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start following from the newest change, and watching the streams' tokens."""
        with contextlib.suppress(psycopg.Error, OSError):
            self.position = await self.state.db(q.last_stream_seq)
            self.database_ok = True
        self._tasks = [
            asyncio.create_task(self._run(), name="alert-feed"),
            asyncio.create_task(self._watch_tokens(), name="alert-feed-tokens"),
        ]

    async def stop(self) -> None:
        """End every open stream and stop following."""
        self._stopping.set()
        for sub in list(self._subs):
            sub.end("server_stopping")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def subscribe(self, scope: Sequence[str] | None, token_id: int) -> Subscriber:
        """Open a subscription (before replaying, so that nothing falls in between)."""
        sub = Subscriber(scope, token_id)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Close a subscription."""
        self._subs.discard(sub)

    @property
    def database(self) -> str:
        """'ok' when the feed reaches the database, else 'down' (also before it has tried)."""
        return "ok" if self.database_ok else "down"

    def _database(self, ok: bool) -> None:
        """Note whether the database answers; tell every stream when that changes."""
        if ok == self.database_ok:
            return
        self.database_ok = ok
        status = FeedStatus(self.database)
        for sub in self._subs:
            if sub.ended is not None or sub.overflow:
                continue
            try:
                sub.queue.put_nowait(status)
            except asyncio.QueueFull:
                sub.overflow = True

    def _publish(self, ev: StreamEvent) -> None:
        for sub in self._subs:
            if sub.ended is not None or sub.overflow or not sub.wants(ev):
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
            if events:
                # Checked after the events were read: a token revoked before any of them
                # committed is seen here, so its stream never gets a change made after that.
                await self.check_tokens()
            position = self.position
            for ev in events:
                self._publish(ev)
                position = max(position, ev.stream_id)
            self.position = position
            if len(events) < BATCH:
                return

    async def check_tokens(self) -> None:
        """End every stream whose token was revoked, expired or deleted since it was opened."""
        subs = [s for s in self._subs if s.ended is None]
        if not subs:
            return
        dead = await self.state.db(store_tokens.no_longer_live, {s.token_id for s in subs})
        for sub in subs:
            reason = dead.get(sub.token_id)
            if reason is not None:
                log.info("stream ended", token_id=sub.token_id, reason=reason)
                sub.end(reason)

    async def _watch_tokens(self) -> None:
        # A stream is authorised once, when it opens; without this a revoked token would go
        # on receiving alert changes for as long as its connection lasts.
        every = self.state.options.stream_token_check_s
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), every)
                return
            try:
                await self.check_tokens()
            except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
                # Nothing can reach a stream while the database is away either; check again.
                log.warning("stream token check failed; retrying", error=str(exc)[:200])

    async def _run(self) -> None:
        opts = self.state.options
        while not self._stopping.is_set():
            try:
                # A deadline on connecting: a link that swallows the handshake would otherwise
                # hold the feed (and every stream's word on the database) for minutes.
                async with await psycopg.AsyncConnection.connect(
                    opts.dsn,
                    autocommit=True,
                    application_name="firesentry-api-feed",
                    connect_timeout=opts.feed_connect_timeout_s,
                ) as conn:
                    await channels.listen(conn, channels.ALERT_EVENTS)
                    while not self._stopping.is_set():
                        await self.poll()
                        self._database(True)
                        async for _ in conn.notifies(timeout=opts.stream_poll_s, stop_after=1):
                            pass
            except (psycopg.Error, OSError) as exc:
                log.warning("alert feed lost the database; retrying", error=str(exc)[:200])
                self._database(False)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)


def _frame(event: str, ident: int, data: str) -> bytes:
    return f"id: {ident}\nevent: {event}\ndata: {data}\n\n".encode()


def _end_frame(ident: int, reason: str) -> bytes:
    return _frame("end", ident, json.dumps({"reason": reason, "message": END_MESSAGES[reason]}))


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
    sub = feed.subscribe(scope, call.who.token_id)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    idle = state.options.stream_idle_timeout_s

    async def send(data: bytes) -> None:
        await exports.send(call.request, resp, data, idle)

    try:
        await resp.prepare(call.request)
        await send(b"retry: 2000\n\n")
        if last is None:
            last = feed.position
            if last is None:
                last = await state.db(q.last_stream_seq)
        else:
            replayed = 0
            while sub.ended is None:
                events = await load_events(state, last, scope)
                for ev in events:
                    await send(_frame("alert", ev.stream_id, ev.model_dump_json(by_alias=True)))
                    last = ev.stream_id
                replayed += len(events)
                if len(events) < BATCH:
                    break
                if replayed >= MAX_REPLAY:
                    # Too far behind to catch up event by event: reload the lists instead.
                    last = max(feed.position or 0, last)
                    await send(_frame("reset", last, "{}"))
                    break
        if sub.ended is None:
            ready = json.dumps({"stream_id": last, "database": feed.database})
            await send(_frame("ready", last, ready))
        keepalive = state.options.stream_keepalive_s
        while sub.ended is None:
            if sub.overflow and sub.queue.empty():
                sub.ended = "too_far_behind"
                break
            try:
                live = await asyncio.wait_for(sub.queue.get(), keepalive)
            except TimeoutError:
                await send(b": keepalive\n\n")
                continue
            if live is None:
                break
            if isinstance(live, FeedStatus):
                await send(_frame("status", last, json.dumps({"database": live.database})))
                continue
            if live.stream_id <= last:
                continue
            await send(_frame("alert", live.stream_id, live.model_dump_json(by_alias=True)))
            last = live.stream_id
        if sub.ended is not None:
            await send(_end_frame(last, sub.ended))
    except ConnectionResetError:
        pass  # the client went away
    except exports.ClientStalled as exc:
        log.info("stream client dropped", token_id=call.who.token_id, reason=str(exc))
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
