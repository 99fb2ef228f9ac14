"""What the fake SMS gateways and chat robots share: accepted requests, injected failures."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from simulators.services.server import HttpServer


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One request a fake provider accepted (and would have delivered)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Injected:
    """A failure a test told the provider to answer with next."""

    status: int | None = None  # an HTTP status to answer with
    code: int | str | None = None  # or a provider error code


@dataclass(frozen=True, slots=True)
class ReceiptPost:
    """A delivery receipt as the provider POSTs it back (see each provider's _receipt)."""

    url: str
    headers: dict[str, str]
    data: bytes


class FakeProvider(HttpServer):
    """Records accepted requests; answers injected failures first; with `receipts` on, POSTs a
    delivery receipt for each accepted message, as the real service does a moment later."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ProviderRequest] = []
        self.refused: list[str] = []  # why requests were refused (bad signature, …)
        self._injected: list[Injected] = []
        # Called with each accepted request, in the server's thread (the demo prints them).
        self.on_accept: Callable[[ProviderRequest], None] | None = None
        # Where receipts go (providers whose callback is per message ignore it).
        self.receipts_to: str | None = None
        self.receipts = False
        self._undeliverable = 0
        self._receipt_tasks: set[asyncio.Task[None]] = set()
        # What each receipt POST was answered with: (HTTP status, the receipt's delivered flag).
        self.receipt_answers: list[tuple[int, bool]] = []

    def undeliverable_next(self, n: int = 1) -> None:
        """The next n accepted messages never reach the phone: their receipts say so."""
        with self._lock:
            self._undeliverable += n

    def _receipt(self, item: ProviderRequest, delivered: bool) -> ReceiptPost | None:
        """The receipt of an accepted message, as this provider sends it (None: it sends none)."""
        return None

    async def _send_receipt(self, item: ProviderRequest, delivered: bool) -> None:
        post = self._receipt(item, delivered)
        if post is None:
            return
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(post.url, data=post.data, headers=post.headers) as r:
                    status = r.status
            except aiohttp.ClientError:
                status = 0
        with self._cond:
            self.receipt_answers.append((status, delivered))
            self._cond.notify_all()

    def wait_for_receipts(self, n: int, timeout: float) -> bool:
        """Wait until n receipts were posted (whatever they were answered)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.receipt_answers) >= n, timeout)

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses, in order."""
        with self._lock:
            self._injected.extend(Injected(status=s) for s in statuses)

    def reject_next(self, *codes: int | str) -> None:
        """Answer the next requests with these provider error codes, in order."""
        with self._lock:
            self._injected.extend(Injected(code=c) for c in codes)

    @property
    def keys(self) -> list[str]:
        """Idempotency keys of the accepted requests, in order (repeats included)."""
        with self._lock:
            return [r.idempotency_key for r in self.requests]

    def duplicate_keys(self) -> set[str]:
        """Keys accepted more than once: the same notification delivered twice."""
        return {k for k, n in Counter(self.keys).items() if n > 1}

    def wait_for(self, predicate: Callable[[list[ProviderRequest]], bool], timeout: float) -> bool:
        """Wait until the accepted requests satisfy predicate, or the timeout passes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.requests), timeout)

    async def _begin(self) -> web.Response | None:
        """Count the attempt, wait out any delay; the injected failure to answer with, if any."""
        with self._lock:
            self.attempts += 1
            injected = self._injected.pop(0) if self._injected else None
        if await self._pause():
            return web.Response(status=503, text="shutting down")
        return None if injected is None else self._injected_response(injected)

    def _injected_response(self, injected: Injected) -> web.Response:
        """How this provider answers a failure a test injected."""
        raise NotImplementedError

    def _refuse(self, why: str) -> None:
        with self._cond:
            self.refused.append(why)
            self._cond.notify_all()

    def _accept(self, request: web.Request, raw: bytes, body: dict[str, Any], key: str) -> None:
        item = ProviderRequest(
            request.path, dict(request.query), dict(request.headers), body, raw, key
        )
        with self._cond:
            self.requests.append(item)
            delivered = self._undeliverable == 0
            self._undeliverable = max(0, self._undeliverable - 1)
            self._cond.notify_all()
        if self.on_accept is not None:
            self.on_accept(item)
        if self.receipts:
            # After the answer, as a real provider reports delivery later; kept referenced.
            task = asyncio.get_running_loop().create_task(self._send_receipt(item, delivered))
            self._receipt_tasks.add(task)
            task.add_done_callback(self._receipt_tasks.discard)


def json_object(raw: bytes) -> dict[str, Any] | None:
    """The JSON object in raw, or None if raw is not one."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
