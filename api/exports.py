"""What every streamed download shares: export slots, a send that gives up on idle clients, CSV cells.

An export holds a database connection (a server-side cursor in a transaction) for as long as
its client takes to read it. So exports get slots of their own (a pool of export_pool_max
connections, export_per_token of them per token), and a client that stops reading is dropped
after an idle timeout instead of holding its connection for ever.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiohttp import web

# Cells a spreadsheet would run as a formula (OWASP, "CSV Injection"): = + - @, and tab and
# carriage return, which some importers strip before looking at the first character.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
RETRY_AFTER_S = 10


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: a leading formula character gets a `'` first.

    Numbers are left alone (float and int never render as a formula, and a negative reading
    must stay a number for whoever charts it); every text cell is checked.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = "" if value is None else str(value)
        return "'" + text if text.startswith(FORMULA_START) else text
    return repr(value) if isinstance(value, float) else str(value)


def csv_lines(rows: Iterable[Sequence[object]]) -> bytes:
    """Rows as CSV (\\n line ends), every cell passed through safe_cell."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([safe_cell(c) for c in r] for r in rows)
    return buf.getvalue().encode()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an export cannot start now: HTTP status, error code and message."""

    status: int
    error: str
    message: str


class ExportSlots:
    """Exports running now, per token and in all (one event loop: no lock needed)."""

    def __init__(self, total: int, per_token: int) -> None:
        self.total = total
        self.per_token = per_token
        self._by_token: dict[int, int] = {}

    @property
    def running(self) -> int:
        """Exports running now."""
        return sum(self._by_token.values())

    def acquire(self, token_id: int) -> Refusal | None:
        """Take a slot for the token, or say why not (the caller then answers with Retry-After)."""
        mine = self._by_token.get(token_id, 0)
        if mine >= self.per_token:
            return Refusal(
                429,
                "too_many_requests",
                f"this token is already running {mine} export{'s' if mine > 1 else ''} (the "
                f"limit, api.export_per_token, is {self.per_token}); wait until it has finished",
            )
        if self.running >= self.total:
            return Refusal(
                503,
                "unavailable",
                f"all {self.total} export slots (api.export_pool_max) are in use; try again "
                "shortly",
            )
        self._by_token[token_id] = mine + 1
        return None

    def release(self, token_id: int) -> None:
        """Give a slot back."""
        left = self._by_token.get(token_id, 0) - 1
        if left > 0:
            self._by_token[token_id] = left
        else:
            self._by_token.pop(token_id, None)


class ClientStalled(Exception):
    """The client took nothing for the idle timeout; its connection has been dropped."""


async def send(
    request: web.Request, resp: web.StreamResponse, data: bytes | None, idle_s: float
) -> None:
    """Write to a streamed response (None: its end); drop a client that takes nothing for idle_s.

    resp.write waits while the socket's buffers are full, that is for as long as the client
    reads nothing: without a deadline a client that never reads holds its handler (and an
    export's database connection) for ever.
    """
    try:
        await asyncio.wait_for(resp.write(data) if data is not None else resp.write_eof(), idle_s)
    except TimeoutError:
        # abort, not close: close would wait to flush the very bytes the client does not take.
        if request.transport is not None:
            request.transport.abort()
        raise ClientStalled(f"the client took nothing for {idle_s:g} s") from None
