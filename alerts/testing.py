"""A local webhook receiver that verifies signatures and records what it got (tests and demo)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from alerts.notify.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass(frozen=True, slots=True)
class Received:
    """One POST the receiver accepted."""

    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    signature_ok: bool
    idempotency_key: str


@dataclass(slots=True)
class _Behaviour:
    fail_next: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    delay_s: float = 0.0


class WebhookReceiver:
    """An aiohttp server on 127.0.0.1 in its own thread; answers like a user's webhook would."""

    def __init__(
        self, secret: bytes | None, on_receive: Callable[[Received], None] | None = None
    ) -> None:
        self.secret = secret
        self.on_receive = on_receive
        self.received: list[Received] = []
        self.attempts = 0
        self.behaviour = _Behaviour()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The URL to configure as a webhook receiver."""
        return f"http://127.0.0.1:{self.port}/hook"

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses, in order."""
        with self._lock:
            self.behaviour.fail_next.extend(statuses)

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each request."""
        self.behaviour.delay_s = seconds

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._lock:
            self.attempts += 1
            status = self.behaviour.fail_next.pop(0) if self.behaviour.fail_next else 200
        if self.behaviour.delay_s:
            await asyncio.sleep(self.behaviour.delay_s)
        if status != 200:
            return web.Response(status=status, text="injected failure")
        headers = dict(request.headers)
        ok = self.secret is not None and verify(
            self.secret, headers.get(TIMESTAMP_HEADER, ""), raw, headers.get(SIGNATURE_HEADER, "")
        )
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return web.Response(status=400, text="body is not JSON")
        key = headers.get(IDEMPOTENCY_HEADER, "")
        item = Received(body, raw, headers, ok, key)
        with self._cond:
            duplicate = any(r.idempotency_key == key for r in self.received)
            if not duplicate:
                self.received.append(item)
            self._cond.notify_all()
        if not duplicate and self.on_receive is not None:
            self.on_receive(item)
        return web.json_response({"ok": True, "duplicate": duplicate})

    def start(self) -> WebhookReceiver:
        """Start serving; returns self once the port is bound."""
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/hook", self._handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = int(runner.addresses[0][1])
            self._runner = runner
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("webhook receiver did not start")
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Wait until the received list satisfies predicate, or the timeout passes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.received), timeout)
