"""PendingLastSeen: the newest reading time per device wins, heard is the last batch's."""

from __future__ import annotations

import numpy as np

from ingest.last_seen import PendingLastSeen


def nums(*n: int) -> np.ndarray:
    return np.array(n, np.int32)


def ms(*t: int) -> np.ndarray:
    return np.array(t, np.int64)


def test_the_newest_time_wins_within_and_across_batches_and_heard_is_the_latest() -> None:
    p = PendingLastSeen()
    assert not p
    p.add(nums(7, 7, 3), ms(500, 900, 100), heard_ms=1_000)
    p.add(nums(7, 5000), ms(800, -5), heard_ms=2_000)  # an older reading of 7; a far device
    got_nums, seen, heard = p.pending()
    assert got_nums.tolist() == [3, 7, 5000]
    assert seen.tolist() == [100, 900, -5]
    assert heard.tolist() == [1_000, 2_000, 2_000]


def test_clear_forgets_everything_and_empty_batches_note_nothing() -> None:
    p = PendingLastSeen()
    p.add(nums(1), ms(10), heard_ms=20)
    p.clear()
    assert not p
    p.add(nums(), ms(), heard_ms=30)
    assert not p and p.pending()[0].size == 0
    p.add(nums(1), ms(5), heard_ms=40)
    assert p.pending()[1].tolist() == [5], "a cleared slot does not remember the older time"
