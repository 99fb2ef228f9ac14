"""A fake webhook receiver that checks signatures, freshness and idempotency keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from alerts.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidDelivery, check
from simulators.services.server import HttpServer


@dataclass(frozen=True, slots=True)
class Received:
    """One POST the receiver accepted: signed, in the time window, with a key not seen before."""

    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    signature_ok: bool
    idempotency_key: str  # the signed body's, never the (unsigned) Idempotency-Key header


@dataclass(slots=True)
class _Behaviour:
    fail_next: list[int] = field(default_factory=list)  # statuses to answer before succeeding


class WebhookReceiver(HttpServer):
    """Answers like a careful user's webhook: 401 unless signed and fresh, each body key once.

    A POST without a valid signature, or with a timestamp more than 300 s off, is answered 401
    and recorded only in `refused`; a replay of a key already processed (whatever its
    Idempotency-Key header says) is answered 200 `{"duplicate": true}` and not processed again.
    """

    thread_name = "webhook-receiver"

    def __init__(self, secret: bytes, on_receive: Callable[[Received], None] | None = None) -> None:
        super().__init__()
        if not secret:
            raise ValueError("a webhook receiver needs the secret its deliveries are signed with")
        self.secret = secret
        self.on_receive = on_receive
        self.received: list[Received] = []
        self.refused: list[str] = []  # the reason of each POST answered 401/400
        self._keys: set[str] = set()
        self.behaviour = _Behaviour()

    @property
    def url(self) -> str:
        """The URL to configure as a webhook receiver."""
        return f"{self.base_url}/hook"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._handle)

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses, in order."""
        with self._lock:
            self.behaviour.fail_next.extend(statuses)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._lock:
            self.attempts += 1
            status = self.behaviour.fail_next.pop(0) if self.behaviour.fail_next else 200
        if await self._pause():
            return web.Response(status=503, text="shutting down")
        if status != 200:
            return web.Response(status=status, text="injected failure")
        headers = dict(request.headers)
        try:
            key = check(
                self.secret, headers.get(TIMESTAMP_HEADER), raw, headers.get(SIGNATURE_HEADER)
            )
        except InvalidDelivery as exc:
            with self._lock:
                self.refused.append(exc.reason)
            return web.json_response({"ok": False, "error": exc.reason}, status=exc.status)
        item = Received(msgspec.json.decode(raw), raw, headers, True, key)
        with self._cond:
            duplicate = key in self._keys
            if not duplicate:
                self._keys.add(key)
                self.received.append(item)
            self._cond.notify_all()
        if not duplicate and self.on_receive is not None:
            self.on_receive(item)
        return web.json_response({"ok": True, "duplicate": duplicate})

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Wait until the received list satisfies predicate, or the timeout passes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.received), timeout)
