"""Failed authentications counted per client address, and the tokens the database confirmed lately.

Tokens are 32 random bytes, so guessing one is hopeless; the throttle is there so that a
client that keeps failing (a script with an old token, someone probing) is told to back off,
costs the database little and leaves a bounded trail in the log. It counts failures only: a
valid token from the same address still works (a control room may share its NAT address with
whoever is failing), and a success clears no count, so a caller with one valid token cannot
wipe its own failures.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

# Addresses remembered at most; beyond this the ones whose failures all left the window go.
_MAX_ADDRESSES = 10_000
_MAX_TOKENS = 1_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one failure earns: a 401 (counted), or a 429 for so many more seconds."""

    failures: int
    retry_after_s: int | None
    # True for the first refusal of a burst only: log it once, not once a request.
    newly_throttled: bool = False


class FailedAuth:
    """At most `limit` failed authentications per address in any `window_s` seconds answer 401."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._throttled: set[str] = set()

    def failed(self, address: str) -> Verdict:
        """Record a failure of the address (unless it is throttled already); the answer it gets."""
        now = self._clock()
        times = self._failures.get(address)
        if times is None:
            self._sweep(now)
            times = self._failures[address] = deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            # Refusals are not counted: a client that waits Retry-After gets a real try again.
            new = address not in self._throttled
            self._throttled.add(address)
            wait = max(1, math.ceil(times[0] + self.window_s - now))
            return Verdict(len(times), wait, new)
        self._throttled.discard(address)
        times.append(now)
        return Verdict(len(times), None)

    def _sweep(self, now: float) -> None:
        if len(self._failures) < _MAX_ADDRESSES:
            return
        stale = [a for a, t in self._failures.items() if not t or t[-1] <= now - self.window_s]
        for address in stale:
            del self._failures[address]
            self._throttled.discard(address)


class KnownTokens:
    """Token digests the database confirmed recently, for /readyz while the database is away.

    Only /readyz consults it, and only when the token cannot be checked: an operator with a
    token then still sees why the API is not ready. Nothing else is ever granted from it.
    """

    def __init__(self, keep_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_s = keep_s
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def confirmed(self, digest: bytes) -> None:
        """The database just confirmed this token."""
        self._seen[digest] = self._clock()
        self._seen.move_to_end(digest)
        while len(self._seen) > _MAX_TOKENS:
            self._seen.popitem(last=False)

    def forget(self, digest: bytes) -> None:
        """The database just refused this token."""
        self._seen.pop(digest, None)

    def recently_confirmed(self, digest: bytes) -> bool:
        """Tell whether the database confirmed the token within keep_s."""
        at = self._seen.get(digest)
        return at is not None and self._clock() - at <= self.keep_s
