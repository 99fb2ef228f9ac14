"""The hazard closed loop at work: report a hazard, take a step, and the periodic round that
records the hazards the data finds and escalates overdue ones (messages through the outbox)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg

from store import alert_plan
from store import hazards as store
from store.alerts import ContactRow
from store.hazards import HazardRow, NewHazard
from supervision.hazards import (
    Action,
    HazardError,
    HazardPolicy,
    findings,
    load_policy,
    next_state,
    notice_text,
)


@dataclass(frozen=True, slots=True)
class HazardOptions:
    """The policy, the timezone of the messages' times, and the person channels configured."""

    policy: HazardPolicy = field(default_factory=load_policy)
    timezone: str = "Asia/Shanghai"
    channels: frozenset[str] = frozenset({"sms", "email"})


def _tell(
    conn: psycopg.Connection[Any],
    hazards: Sequence[HazardRow],
    kind: Literal["notified", "reminder", "overdue"],
    roles: Sequence[str],
    opts: HazardOptions,
) -> int:
    """Queue each hazard's message to each party of its unit in these roles on each usable
    channel (the units' contacts read in one query); return how many."""
    contacts = alert_plan.contacts_of_units(conn, {h.unit_id for h in hazards})
    messages = [m for h in hazards for m in _messages(h, contacts[h.unit_id], kind, roles, opts)]
    store.queue(conn, messages)
    return len(messages)


def _messages(
    h: HazardRow,
    contacts: Sequence[ContactRow],
    kind: Literal["notified", "reminder", "overdue"],
    roles: Sequence[str],
    opts: HazardOptions,
) -> list[store.Message]:
    messages = []
    for p in (c for c in contacts if c.role in roles):
        for channel in opts.policy.channels:
            address = p.phone if channel == "sms" else p.email
            if channel not in opts.channels or not address:
                continue
            if p.channels and channel not in p.channels:
                continue
            title, text = notice_text(
                kind,
                hazard_id=h.id,
                unit_name=h.unit_name,
                description=h.description,
                severity=h.severity,
                deadline=h.deadline,
                responsible=h.responsible,
                locale=p.locale,
                timezone=opts.timezone,
            )
            messages.append(store.Message(channel, address, p.id, p.locale, h.id, title, text))
    return messages


def report(
    conn: psycopg.Connection[Any],
    opts: HazardOptions,
    *,
    unit_id: str,
    category: str,
    severity: str,
    description: str,
    found_by: str,
    device_id: str | None = None,
    responsible: str = "",
    now: dt.datetime,
) -> HazardRow:
    """Record a hazard a person found; its deadline follows from its severity."""
    with conn.transaction():
        new = NewHazard(
            unit_id,
            category,
            severity,
            description,
            found_by,
            opts.policy.deadline(severity, now),
            device_id=device_id,
            responsible=responsible,
        )
        hazard_id = store.create(conn, new)
        assert hazard_id is not None  # only the data's hazards can collide
        row = store.get(conn, hazard_id)
        assert row is not None
        return row


def act(
    conn: psycopg.Connection[Any],
    opts: HazardOptions,
    hazard_id: int,
    action: Action,
    actor: str,
    *,
    comment: str = "",
    photo_ids: Sequence[int] = (),
    responsible: str | None = None,
) -> HazardRow:
    """Take a step of the loop; HazardError when it does not apply (the message says why).

    Submitting a rectification needs evidence (a photo or a comment); a rejected review says
    why. Who may take which step is the caller's (the API: hazards:review for review, reject
    and close)."""
    with conn.transaction():
        h = store.get(conn, hazard_id)
        if h is None:
            raise HazardError(f"no hazard {hazard_id}")
        target = next_state(h.state, action)
        photos = store.photos_of(conn, hazard_id, photo_ids)
        if len(photos) != len(set(photo_ids)):
            raise HazardError(f"photo_ids must be photos of hazard {hazard_id}")
        if action == "submit" and not (photos or comment.strip()):
            raise HazardError("a rectification is submitted with evidence: a photo or a comment")
        if action == "reject" and not comment.strip():
            raise HazardError("say why the rectification is rejected (comment)")
        # Only from the state just read: a step taken meanwhile by someone else wins.
        moved = store.step(
            conn,
            hazard_id,
            [h.state],
            target,
            kind="rejected" if action == "reject" else target,
            actor=actor,
            comment=comment,
            photo_ids=photos,
            responsible=responsible,
        )
        if not moved:
            raise HazardError(f"hazard {hazard_id} changed meanwhile; look again")
        after = store.get(conn, hazard_id)
        assert after is not None
        if action == "notify":
            _tell(conn, [after], "notified", opts.policy.notify_roles, opts)
        return after


@dataclass(frozen=True, slots=True)
class Round:
    """What one round did: hazards the data found (new ones), those reminded of their
    deadline, overdue ones escalated."""

    found: list[int]
    reminded: list[int]
    overdue: list[int]
    messages: int


def run_round(
    conn: psycopg.Connection[Any],
    opts: HazardOptions,
    rule_names: dict[str, str],
    now: dt.datetime,
) -> Round:
    """Record what the data finds (once per open finding), remind hazards' people once before
    the deadline, and escalate hazards gone overdue, in one transaction."""
    policy = opts.policy
    with conn.transaction():
        long_open = {
            rule.id: store.long_open(conn, rule.rules, now - dt.timedelta(hours=rule.open_hours))
            for rule in policy.from_data
        }
        false_alarms = (
            store.false_alarm_counts(conn, now - dt.timedelta(days=1))
            if policy.false_alarms is not None
            else {}
        )
        found = []
        for f in findings(policy, long_open, false_alarms, rule_names, now):
            new = NewHazard(
                f.unit_id,
                f.category,
                f.severity,
                f.description,
                "engine",
                policy.deadline(f.severity, now),
                device_id=f.device_id,
                rule_id=f.rule_id,
                dedup_key=f.dedup_key,
            )
            hazard_id = store.create(conn, new, comment=f"found by rule {f.rule_id}")
            if hazard_id is not None:
                found.append(hazard_id)
        before = dt.timedelta(hours=policy.remind_before_h)
        reminded = store.take_reminders(conn, now, before) if before else []
        messages = _tell(conn, reminded, "reminder", policy.notify_roles, opts)
        overdue = store.take_overdue(conn, now)
        messages += _tell(conn, overdue, "overdue", policy.overdue_roles, opts)
    return Round(found, [h.id for h in reminded], [h.id for h in overdue], messages)
