"""Which channel alerts to open, keep and clear, and who hears of them: decisions only.

A channel whose notifications have kept failing for longer than `after_s` is an alert: the
control room is told through every other channel it has (its webhooks, robots, and the
phones and mail of control-room contacts), never through the failing one. It clears when
nothing waits on that channel after a failure any more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from store.channel_alerts import Address, ChannelAlert, Failing


@dataclass(slots=True)
class WatchPlan:
    """What one look at the channels decided."""

    open: list[Failing] = field(default_factory=list)
    update: list[tuple[ChannelAlert, Failing]] = field(default_factory=list)
    clear: list[ChannelAlert] = field(default_factory=list)


def plan(
    failing: Sequence[Failing], opened: Sequence[ChannelAlert], now: dt.datetime, after_s: float
) -> WatchPlan:
    """Open alerts for subjects failing longer than after_s; clear those no longer failing."""
    out = WatchPlan()
    by_subject = {a.subject: a for a in opened}
    failing_now = {f.subject for f in failing}
    for f in failing:
        alert = by_subject.get(f.subject)
        if alert is not None:
            out.update.append((alert, f))
        elif (now - f.since).total_seconds() >= after_s:
            out.open.append(f)
    out.clear = [a for a in opened if a.subject not in failing_now]
    return out


def others(subject: str, addresses: Sequence[Address]) -> list[Address]:
    """The addresses that do not go through the failing subject."""
    return [a for a in addresses if a.channel != subject and f"{a.channel}:{a.receiver}" != subject]
