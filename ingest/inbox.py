"""What ingest has received and not yet written: fire alarms first (火警优先).

Events and status messages are urgent: a batch never waits for more telemetry once one is in,
and an urgent message never waits for a full telemetry batch to fill. Telemetry is batched up
to a size or a wait, whichever comes first.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _Timed(Protocol):
    @property
    def received_at(self) -> float: ...


T = TypeVar("T", bound=_Timed)


class Inbox(Generic[T]):
    """Two queues, urgent and telemetry, read by the one batch thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._urgent: deque[T] = deque()
        self._normal: deque[T] = deque()

    def put_many(self, items: list[T], urgent: bool) -> None:
        """Add the messages of one read (from a session's thread)."""
        if not items:
            return
        with self._cond:
            (self._urgent if urgent else self._normal).extend(items)
            self._cond.notify()

    def put_back(self, items: list[T], urgent: Callable[[T], bool]) -> None:
        """Return a batch that was taken but will not be written yet: first in line again."""
        with self._cond:
            for item in reversed(items):
                (self._urgent if urgent(item) else self._normal).appendleft(item)
            self._cond.notify()

    def wake(self) -> None:
        """Wake a wait_urgent() (something else it waits for happened)."""
        with self._cond:
            self._cond.notify_all()

    def wait_urgent(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until an urgent message waits or done() holds; whether an urgent one waits."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._urgent) or done(), timeout_s)
            return bool(self._urgent)

    def empty(self) -> bool:
        """Whether nothing waits."""
        with self._cond:
            return not (self._urgent or self._normal)

    def oldest(self) -> float | None:
        """When the oldest waiting message was received (time.monotonic()), if any waits."""
        with self._cond:
            heads = [q[0].received_at for q in (self._urgent, self._normal) if q]
        return min(heads) if heads else None

    def take(self, max_n: int, wait_s: float, idle_s: float = 0.2) -> list[T]:
        """The next batch: every urgent message at once (with the telemetry already in hand),
        else telemetry up to max_n or until wait_s after the first; [] after idle_s of nothing."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._urgent or self._normal, idle_s):
                return []
            batch: list[T] = []
            deadline = time.monotonic() + wait_s
            while not self._urgent and len(batch) < max_n:
                while self._normal and len(batch) < max_n:
                    batch.append(self._normal.popleft())
                left = deadline - time.monotonic()
                if len(batch) >= max_n or left <= 0:
                    break
                self._cond.wait(left)
            # Urgent messages never wait for the next batch, whatever its size.
            batch.extend(self._urgent)
            self._urgent.clear()
            return batch
