"""The outbox's decisions, without I/O: which claimed rows go out as one message, and when a
party's rate limit holds them back.

Rows waiting for the same party (and unit) share a group_key (see alerts/planner.py); the
outbox claims them together and sends them as one message. A channel's rate limit allows at
most N messages per party per window; what a party is sent beyond that waits until the oldest
message of the window ages out, and then goes out merged with whatever else has piled up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.templates import render, severity_rank
from alerts.types import Notification
from store.outbox import FIRE_119, ClaimedRow


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to deliver, and the ids of the rows it stands for (lowest, its lead, first);
    what decides how long it is retried: the worst severity, the oldest row, whether any of
    its alerts is still open and unacknowledged."""

    notification: Notification
    ids: tuple[int, ...]
    severity: str = "info"
    queued_at: dt.datetime | None = None
    alert_open: bool = True


def group_keys(rows: Iterable[ClaimedRow]) -> list[str]:
    """The distinct group keys of the rows, sorted; rows without one are alone anyway."""
    return sorted({r.group_key for r in rows if r.group_key})


# Channels that POST the row's own JSON payload: nothing is rendered for them.
JSON_CHANNELS = frozenset({"webhook", FIRE_119})
# Kinds of rows that carry their rendered title and text (store/hazards.py queue()).
PRE_RENDERED = frozenset({"hazard"})


def group(rows: Iterable[ClaimedRow]) -> list[list[ClaimedRow]]:
    """The rows by group key (a row without one is a group of its own), in order of arrival."""
    groups: dict[str, list[ClaimedRow]] = {}
    for r in rows:
        groups.setdefault(r.group_key or f"#{r.id}", []).append(r)
    return list(groups.values())


def exempt_from_rate_limit(members: Iterable[ClaimedRow]) -> bool:
    """Tell whether a group goes out regardless of the rate limit: it holds a critical alert."""
    return any(m.payload.get("alert", {}).get("severity") == "critical" for m in members)


def held_until(
    sent_in_window: int, oldest_sent: dt.datetime | None, max_per_window: int, window_s: float
) -> dt.datetime | None:
    """When the party may next be messaged if the window's messages reach the limit; None: now."""
    if sent_in_window < max_per_window or oldest_sent is None:
        return None
    return oldest_sent + dt.timedelta(seconds=window_s)


def worst_severity(alerts: Sequence[Mapping[str, Any]]) -> str:
    """The most severe of the alerts' severities (unknown ones rank last; missing: info)."""
    return min((str(a.get("severity", "info")) for a in alerts), key=severity_rank)


def merge(members: Sequence[ClaimedRow], tz: dt.tzinfo) -> Outgoing:
    """One message for a group: the lead row's own payload for webhooks, rendered text else."""
    ordered = sorted(members, key=lambda m: m.id)
    lead = ordered[0]
    if lead.channel in JSON_CHANNELS:
        payload = lead.payload
    elif lead.kind in PRE_RENDERED:
        # Written with its words (a hazard's message): sent as it is, one row a message.
        payload = {
            "title": str(lead.payload.get("title", "")),
            "text": str(lead.payload.get("text", "")),
            "locale": lead.locale,
            "severity": "warning",
            "alert_ids": [],
        }
    else:
        # The notice's unit_fire_alarms (a spreading fire) is said in the rendered title.
        alerts = [
            {**m.payload.get("alert", {}), "unit_fire_alarms": m.payload.get("unit_fire_alarms")}
            for m in ordered
        ]
        event = lead.kind if len(ordered) == 1 else "group"
        text = render(event, alerts, lead.locale, lead.channel, tz=tz)
        payload = {
            "title": text.title,
            "text": text.text,
            "locale": lead.locale,
            "severity": worst_severity(alerts),
            "alert_ids": [a.get("id") for a in alerts],
        }
    notification = Notification(
        lead.id,
        lead.alert_id,
        lead.channel,
        lead.receiver,
        lead.key,
        payload,
        max(m.attempts for m in ordered),
    )
    return Outgoing(
        notification,
        tuple(m.id for m in ordered),
        worst_severity([m.payload.get("alert", {}) for m in ordered]),
        min(m.created_at for m in ordered),
        any(m.alert_open for m in ordered),
    )
