"""What the rule engine emits: transitions of a rule's condition for a device, and the panel's
point an event named.

Apart from the engine (numpy), so that the alert planner and the outbox, which read
transitions, do not import numpy: the outbox process stays ~15 MB smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.model import Rule


@dataclass(frozen=True, slots=True)
class Point:
    """Where on a panel an event happened: loop, point (detector) and the panel's text."""

    loop: int | None
    point: int | None
    text: str = ""

    @property
    def key(self) -> str:
        """The alert identity of the point ('' when the event names none: the whole device)."""
        if self.loop is None and self.point is None:
            return ""
        return (
            f"{'' if self.loop is None else self.loop}-{'' if self.point is None else self.point}"
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a rule's condition for one device: opened (breach) or cleared.

    For event rules `point` names the alarming point; a clear with no point clears them all."""

    rule: Rule
    device_num: int
    ts_ms: int
    value: float
    threshold: float
    opened: bool
    point: Point | None = None

    @property
    def point_key(self) -> str:
        """The point part of the alert's identity."""
        return "" if self.point is None else self.point.key
