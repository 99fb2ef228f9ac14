"""Failover by person: which channel a person is tried on next when theirs keeps failing, and
when the control room must be told that someone cannot be reached. Decisions only.

A notification to a contact that has failed for longer than `after_s`, or was refused (a
wrong number, a full mailbox), is sent again on the contact's next channel: the contact's own
order if they have one (contacts.channels), else SMS, then e-mail. Whichever is sent first
cancels the others (store/outbox.py). When every channel of the person has been tried, a
notification of a critical or major alert makes the control room hear it instead, so that
someone picks up a phone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.failover import Stuck

# The channels a person can be reached on, in the order tried when the contact names none.
PERSON_CHANNELS = ("sms", "email")
URGENT = frozenset({"critical", "major"})
# firesentry's own notices to the control room: failing over is fine, but a control-room
# contact who cannot get one must not make more notices to the others (a cascade).
OWN_RULES = frozenset({"channel_failing", "party_unreachable"})


@dataclass(frozen=True, slots=True)
class HandOver:
    """Send the notification again on another channel of the same person."""

    row: Stuck
    channel: str
    address: str


@dataclass(frozen=True, slots=True)
class Unreachable:
    """No channel of the person is left: tell the control room."""

    row: Stuck


@dataclass(frozen=True, slots=True)
class Settled:
    """Nothing more to do for this row (no channel left, and too little at stake)."""

    row: Stuck


def next_channel(row: Stuck, available: frozenset[str]) -> tuple[str, str] | None:
    """The first channel of the person's order not yet tried that has a provider and an address."""
    order: Sequence[str] = [c for c in row.contact_channels if c in PERSON_CHANNELS]
    for channel in order or PERSON_CHANNELS:
        address = row.address(channel)
        if channel in row.tried or channel not in available or not address:
            continue
        return channel, address
    return None


def decide(row: Stuck, available: frozenset[str]) -> HandOver | Unreachable | Settled:
    """What to do with a stuck notification; `available` are the channels with a provider."""
    found = next_channel(row, available)
    if found is not None:
        return HandOver(row, *found)
    if row.reached:
        return Settled(row)  # told on another channel; this one keeps trying by itself
    rule = str(row.payload.get("alert", {}).get("rule_id", ""))
    if row.severity in URGENT and row.kind != "resolved" and rule not in OWN_RULES:
        return Unreachable(row)
    return Settled(row)
