"""Devices' last_seen times waiting to be written: a slot per device number, not a dict.

A city's telemetry touches every device between two flushes (every `last_seen_flush_s`). Kept
in dicts of Python ints and written from lists of datetimes, 100,000 devices cost tens of MB
of small objects per flush, interleaved with the messages of the batches around them, which
left Python's allocator fragmented long after the drain (bench --city: +60 MB of arenas
holding 4 MB). Two int64 arrays hold the same, and are written in one statement.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_NONE = np.iinfo(np.int64).min


class PendingLastSeen:
    """The newest reading time and when it was heard, per device, since the last flush."""

    def __init__(self) -> None:
        self._seen = np.zeros(0, np.int64)  # _NONE: nothing noted for that device
        self._heard = np.zeros(0, np.int64)
        self._any = False

    def __bool__(self) -> bool:
        return self._any

    def add(self, nums: npt.NDArray[np.int32], ts_ms: npt.NDArray[np.int64], heard_ms: int) -> None:
        """Note readings (device numbers, their times) heard at heard_ms; the newest time wins."""
        if nums.size == 0:
            return
        top = int(nums.max()) + 1
        if top > self._seen.size:
            cap = max(top, int(self._seen.size * 1.5) + 1024)
            grow = cap - self._seen.size
            self._seen = np.concatenate([self._seen, np.full(grow, _NONE, np.int64)])
            self._heard = np.concatenate([self._heard, np.zeros(grow, np.int64)])
        np.maximum.at(self._seen, nums, ts_ms)
        self._heard[nums] = heard_ms
        self._any = True

    def pending(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(device numbers, newest reading ms, heard ms) of every device noted since clear()."""
        nums = np.flatnonzero(self._seen != _NONE)
        return nums, self._seen[nums], self._heard[nums]

    def clear(self) -> None:
        """Forget what was noted (it was written)."""
        self._seen.fill(_NONE)
        self._any = False
