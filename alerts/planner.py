"""Plan alert changes in memory: transitions or due escalations plus a snapshot in, a plan out.

Plain Python over plain data: no connection, no clock (now is passed in), no I/O. The plan
says which alert rows to insert or update (opened, fired again, repeated, cleared, escalated,
reminded, muted), the history lines, and the outbox rows with their not-before times, after
silences, routes, tiers and quiet hours are applied. store.alert_plan reads the snapshot and
writes the plan; alerts.lifecycle and alerts.escalation put the two together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from zoneinfo import ZoneInfo

from alerts.routing import Route, RoutingFile, Tier
from alerts.shape import AlertObject, notice
from alerts.silences import CONTROL_ROOM, is_critical_alert, mark_silenced
from alerts.types import Receiver
from devices.catalog import EventKind
from devices.registry import Device, Registry
from rules.model import Messages
from rules.transitions import Transition
from store.alert_plan import AlertPlan, HistoryWrite, OutboxWrite
from store.alerts import AlertView, ContactRow
from store.silences import SilenceRow, mutes

_ADDRESS = {"sms": "phone", "email": "email"}
# Who a row goes to: everyone the tier names; only the control room (contacts with role
# control_room, and the configured robots: the centre's group chats); or only the others.
Audience = Literal["all", "control_room", "parties"]
# An alert's identity: (device_num, rule_id, point_key); see rules.engine.Point.
Key = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    """Routing, machine receivers (webhooks) and the channel kind of each named robot."""

    routing: RoutingFile
    webhooks: Sequence[Receiver] = ()
    robot_channels: dict[str, str] = field(default_factory=dict)
    # Person channels that have a configured provider; rows for others would only give up.
    person_channels: frozenset[str] = frozenset({"sms", "email"})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a plan is made from, read in the transaction that writes it."""

    # The open (not closed) alerts of each (device_num, rule_id) the batch touches, every point.
    alerts: Mapping[Key, AlertView] = field(default_factory=dict)
    # Ids reserved for the alerts the batch opens (one per key without an open alert).
    new_ids: Sequence[int] = ()
    # Silences active now that may apply, and those that muted these alerts earlier.
    silences: Sequence[SilenceRow] = ()
    # Contacts of each unit concerned (its own and its district's).
    contacts: Mapping[str, Sequence[ContactRow]] = field(default_factory=dict)
    # Fire alarms open (firing or acknowledged) at each unit that the batch alarms in.
    unit_fire_alarms: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Logged:
    """A line for the log, said after the plan is written."""

    event: str
    fields: dict[str, Any]


@dataclass(slots=True)
class Planned:
    """A plan and what it amounts to."""

    plan: AlertPlan = field(default_factory=AlertPlan)
    opened: int = 0
    repeated: int = 0
    cleared: int = 0
    logs: list[Logged] = field(default_factory=list)

    @property
    def notifications(self) -> int:
        """Outbox rows the plan queues."""
        return len(self.plan.outbox)


def keys_of(transitions: Sequence[Transition], registry: Registry) -> set[tuple[int, str]]:
    """The (device_num, rule_id) pairs whose open alerts (every point) a batch needs."""
    return {(t.device_num, t.rule.id) for t in transitions if t.device_num in registry.by_num}


def new_alerts_needed(
    transitions: Sequence[Transition], registry: Registry, open_keys: set[Key]
) -> int:
    """How many alerts a batch opens: keys that breach and have no open alert yet."""
    return len(
        {
            (t.device_num, t.rule.id, t.point_key)
            for t in transitions
            if t.opened and t.device_num in registry.by_num
        }
        - open_keys
    )


def is_fire_alarm(tr: Transition) -> bool:
    """A fire alarm: an alert to be verified as confirmed fire or false alarm when closed."""
    return tr.rule.kind == "event" and tr.rule.event == EventKind.FIRE_ALARM


def fire_alarm_units(transitions: Sequence[Transition], registry: Registry) -> set[str]:
    """Units where the batch reports a fire alarm (their open fire alarms are counted)."""
    return {
        registry.by_num[t.device_num].unit_id
        for t in transitions
        if t.opened and is_fire_alarm(t) and t.device_num in registry.by_num
    }


def point_words(point: int | None, loop: int | None, text: str, locale: str) -> str:
    """A detector as a message names it: the panel's text, else its loop and point."""
    if text:
        return text
    if loop is None and point is None:
        return ""
    if locale == "en":
        return " ".join(
            x
            for x in (
                f"loop {loop}" if loop is not None else "",
                f"point {point}" if point is not None else "",
            )
            if x
        )
    return "".join(
        x
        for x in (
            f"{loop}回路" if loop is not None else "",
            f"{point}号" if point is not None else "",
        )
        if x
    )


_LOCALES = ("en", "zh-CN")


def _where(point: int | None, loop: int | None, text: str, locale: str, device: Device) -> str:
    """What {point} says: the detector, else the device's location, else its id."""
    return point_words(point, loop, text, locale) or device.location or device.id


def _texts(
    template: Messages,
    tr: Transition,
    device: Device,
    threshold: float,
    loop: int | None,
    point: int | None,
    text: str,
) -> tuple[str, str]:
    """A rule text in English and Chinese, its placeholders filled from the transition, the
    device and the alarming point."""
    rule = tr.rule
    values = {
        "device": device.id,
        "unit": device.unit_name or device.unit_id,
        "metric": rule.metric or "",
        # "falling 0.4 MPa/min" reads better than a signed rate; the notice keeps the sign.
        "value": abs(tr.value) if rule.kind == "rate" else tr.value,
        "threshold": threshold,
        "location": device.location,
        "address": device.unit_address,
    }
    en, zh = (
        _fmt(t, **values, point=_where(point, loop, text, loc, device))
        for t, loc in zip((template.en, template.zh_cn), _LOCALES, strict=True)
    )
    return en, zh


def _fmt(template: str, **values: Any) -> str:
    try:
        return template.format(**values)
    except (KeyError, ValueError, IndexError):
        return template  # a broken template must not lose the alert


def in_quiet_hours(c: ContactRow, local: dt.datetime) -> dt.datetime | None:
    """When the contact's quiet hours end, if `local` falls inside them; else None."""
    if c.quiet_start is None or c.quiet_end is None or c.quiet_start == c.quiet_end:
        return None
    t = local.time()
    start, end = c.quiet_start, c.quiet_end
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_day = local.date() if t < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(end_day, end, local.tzinfo)


def next_step(route: Route, tier: int, reminders: int, now: dt.datetime) -> dt.datetime | None:
    """When the alert escalates next (tier `tier` was just told, at `now`), or None for never."""
    if tier + 1 < len(route.tiers):
        gap = route.tiers[tier + 1].after_min - route.tiers[tier].after_min
        return now + dt.timedelta(minutes=gap)
    if route.repeat is None or reminders >= route.repeat.max:
        return None
    return now + dt.timedelta(minutes=route.repeat.every_min)


def _earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    """The earlier of two times, either of which may be missing."""
    return b if a is None else a if b is None else min(a, b)


class _Planner:
    """One plan in the making: working copies of the alert rows, and what to write."""

    def __init__(self, opts: DispatchOptions, snap: Snapshot, now: dt.datetime) -> None:
        self.opts = opts
        self.snap = snap
        self.now = now
        self.local = now.astimezone(ZoneInfo(opts.routing.timezone))
        self.group_wait = dt.timedelta(seconds=opts.routing.group_wait_s)
        self.rows: dict[Key, AlertView] = dict(snap.alerts)
        self.new: dict[Key, None] = {}  # insertion-ordered set of keys opened by this plan
        self.touched: dict[Key, None] = {}
        self.ids = iter(snap.new_ids)
        self.silence_by_id = {s.id: s for s in snap.silences}
        self.fire_alarms = dict(snap.unit_fire_alarms)
        self.out = Planned()

    # --- helpers ---

    def _history(
        self, row: AlertView, kind: str, value: float | None = None, comment: str = ""
    ) -> None:
        self.out.plan.history.append(HistoryWrite(row.id, kind, value, comment))

    def _set(self, key: Key, row: AlertView) -> None:
        self.rows[key] = row
        if key not in self.new:
            self.touched[key] = None

    def _silence_for(self, row: AlertView) -> SilenceRow | None:
        # Silences come longest-running first, as store.silences.active_or_named orders them.
        return next(
            (s for s in self.snap.silences if mutes(s, row.unit_id, row.device_id, row.rule_id)),
            None,
        )

    def _webhooks(self, row: AlertView, status: str, payload: dict[str, Any]) -> None:
        for rc in self.opts.webhooks:
            if status == "resolved" and not rc.send_resolved:
                continue
            self.out.plan.outbox.append(OutboxWrite(row.id, rc.channel, rc.name, payload, status))

    def _tiers(
        self,
        row: AlertView,
        tiers: Sequence[Tier],
        kind: str,
        payload: dict[str, Any],
        audience: Audience = "all",
    ) -> None:
        contacts = self.snap.contacts.get(row.unit_id, ())
        sent: set[tuple[str, str]] = set()
        outbox = self.out.plan.outbox
        for tier in tiers:
            roles = set(tier.roles)
            for c in contacts:
                if c.role not in roles:
                    continue
                if audience == "control_room" and c.role != CONTROL_ROOM:
                    continue
                if audience == "parties" and c.role == CONTROL_ROOM:
                    continue
                held = None if row.severity == "critical" else in_quiet_hours(c, self.local)
                for channel in tier.channels:
                    if channel not in self.opts.person_channels:
                        continue
                    address = getattr(c, _ADDRESS[channel])
                    if not address or (c.channels and channel not in c.channels):
                        continue
                    if (channel, address) in sent:
                        continue  # one person listed in two roles hears once
                    sent.add((channel, address))
                    outbox.append(
                        OutboxWrite(
                            row.id,
                            channel,
                            address,
                            payload,
                            kind,
                            contact_id=c.id,
                            locale=c.locale,
                            group_key=f"{channel}:{address}:{row.unit_id}",
                            not_before=held or self.now + self.group_wait,
                        )
                    )
            if audience == "parties":
                continue
            for robot in tier.robots:
                robot_channel = self.opts.robot_channels.get(robot)
                if robot_channel is None or (robot_channel, robot) in sent:
                    continue
                sent.add((robot_channel, robot))
                outbox.append(
                    OutboxWrite(
                        row.id,
                        robot_channel,
                        robot,
                        payload,
                        kind,
                        group_key=f"{robot_channel}:{robot}:{row.unit_id}",
                        not_before=self.now + self.group_wait,
                    )
                )

    # --- transitions ---

    def transition(self, tr: Transition, device: Device) -> None:
        rule = tr.rule
        at = dt.datetime.fromtimestamp(tr.ts_ms / 1000, dt.UTC)
        threshold = tr.threshold if tr.threshold == tr.threshold else None
        point = tr.point
        loop_no, point_no, point_text = (
            (None, None, "") if point is None else (point.loop, point.point, point.text)
        )
        value = tr.value if rule.kind != "event" else None
        if not tr.opened:
            if rule.kind == "event" and tr.point is None:
                # The panel's reset clears every point of the device.
                keys = [k for k in self.rows if k[0] == tr.device_num and k[1] == rule.id]
            else:
                keys = [(tr.device_num, rule.id, tr.point_key)]
            for key in keys:
                self._clear(key, tr, device, at, value, threshold)
            return
        key = (tr.device_num, rule.id, tr.point_key)
        row = self.rows.get(key)
        if row is not None and rule.kind == "event" and at <= row.last_seen_at:
            return  # the same event again (redelivered after a crash): already counted
        message = _texts(rule.message, tr, device, threshold or 0.0, loop_no, point_no, point_text)
        if row is None:
            row = AlertView(
                id=next(self.ids),
                device_num=tr.device_num,
                unit_id=device.unit_id,
                rule_id=rule.id,
                severity=str(rule.severity),
                state="firing",
                metric=rule.metric,
                threshold=threshold,
                first_value=value,
                value=value,
                opened_at=at,
                last_seen_at=at,
                count=1,
                cleared_at=None,
                message_en=message[0],
                message_zh=message[1],
                needs_verification=is_fire_alarm(tr),
                route=None,
                escalation_tier=0,
                reminders_sent=0,
                silenced_by=None,
                next_escalation_at=None,
                point_key=tr.point_key,
                loop=loop_no,
                point=point_no,
                point_text=point_text,
                device_id=device.id,
                device_type=str(device.type),
                unit_name=device.unit_name,
                district=device.district,
                device_location=device.location,
                unit_address=device.unit_address,
            )
            self.new[key] = None
            previous = None
        else:
            previous = row.state
            row = replace(
                row,
                value=value,
                last_seen_at=max(row.last_seen_at, at),
                count=row.count + 1,
                # A resolved alert that breaches again fires again; an acknowledged one stays so.
                state="firing" if row.state == "resolved" else row.state,
                cleared_at=None,
            )
        self._set(key, row)
        if previous not in (None, "resolved"):
            self.out.repeated += 1
            if rule.kind == "event":
                # The panel reported the same point again: on the alert's record, not a page.
                self._history(row, "repeated", value, comment=f"count {row.count}")
            return
        kind = "opened" if previous is None else "refired"
        self.out.opened += 1
        self._history(row, kind, value)
        obj = AlertObject.of(row, at=at, message=message, value=value, threshold=threshold)
        alarms = None
        if row.needs_verification:
            alarms = self.fire_alarms.get(row.unit_id, 0) + 1
            self.fire_alarms[row.unit_id] = alarms
            if alarms > 1:
                self._history(row, "spreading", comment=f"{alarms} detectors alarming at the unit")
        self._set(key, self._opened(row, notice("firing", "firing", obj, alarms)))
        self.out.logs.append(
            Logged(
                "alert opened",
                {
                    "alert_id": row.id,
                    "rule_id": rule.id,
                    "device_id": device.id,
                    "point": tr.point_key or None,
                    "severity": str(rule.severity),
                    "value": value,
                    "kind": kind,
                    "unit_fire_alarms": alarms,
                },
            )
        )

    def _resolved_text(self, tr: Transition, device: Device, row: AlertView) -> tuple[str, str]:
        """What a resolved notice says: the rule's `resolved` text, else that it is back to
        normal (never the breach text: "53 mA, above the limit 300 mA" would be false)."""
        rule = tr.rule
        unit = device.unit_name or device.unit_id
        threshold = tr.threshold if tr.threshold == tr.threshold else row.threshold or 0.0
        # The alert's own detector: a panel's reset clears every point, each its own alert.
        if rule.resolved is not None:
            return _texts(rule.resolved, tr, device, threshold, row.loop, row.point, row.point_text)
        points = [_where(row.point, row.loop, row.point_text, loc, device) for loc in _LOCALES]
        name_en = rule.name.en if rule.name else rule.id
        name_zh = rule.name.zh_cn if rule.name else rule.id
        where_en = f" ({points[0]})" if points[0] != device.id else ""
        where_zh = f"，{points[1]}" if points[1] != device.id else ""
        return (
            f"Back to normal: {name_en} at {unit}{where_en} ({device.id})",
            f"已恢复正常：{name_zh}，{unit}{where_zh}（{device.id}）",
        )

    def _clear(
        self,
        key: Key,
        tr: Transition,
        device: Device,
        at: dt.datetime,
        value: float | None,
        threshold: float | None,
    ) -> None:
        row = self.rows.get(key)
        if row is None or row.state not in ("firing", "acknowledged"):
            return
        if row.needs_verification and row.state == "firing":
            self.fire_alarms[row.unit_id] = max(0, self.fire_alarms.get(row.unit_id, 0) - 1)
        row = replace(row, state="resolved", cleared_at=at, value=value, next_escalation_at=None)
        self._set(key, row)
        self.out.cleared += 1
        self._history(row, "cleared", value)
        obj = AlertObject.of(
            row,
            at=at,
            message=self._resolved_text(tr, device, row),
            value=value,
            threshold=threshold,
        )
        self._cleared(row, notice("resolved", "resolved", obj))
        self.out.logs.append(
            Logged(
                "alert cleared",
                {"alert_id": row.id, "rule_id": tr.rule.id, "device_id": device.id},
            )
        )

    def _opened(self, row: AlertView, payload: dict[str, Any]) -> AlertView:
        """A new (or re-firing) alert: tell tier 0 and schedule the escalation; when a silence
        covers it, tell only the control room (critical alerts, marked) or nobody."""
        silence = self._silence_for(row)
        route = self.opts.routing.route_for(row.severity, row.device_type, row.rule_id)
        if silence is not None:
            return self._opened_silenced(row, route, silence, payload)
        self._webhooks(row, "firing", payload)
        if route is None:
            return row
        self._tiers(row, route.tiers[:1], "firing", payload)
        return replace(
            row,
            route=route.name,
            escalation_tier=0,
            reminders_sent=0,
            silenced_by=None,
            next_escalation_at=next_step(route, 0, 0, self.now),
        )

    def _opened_silenced(
        self, row: AlertView, route: Route | None, silence: SilenceRow, payload: dict[str, Any]
    ) -> AlertView:
        # The engine looks again when the silence ends (to tell those it muted), or earlier
        # for the control room's next step of a critical alert.
        next_at: dt.datetime | None = silence.ends_at
        before = len(self.out.plan.outbox)
        if is_critical_alert(row.severity, row.needs_verification):
            marked = mark_silenced(payload, silence)
            self._webhooks(row, "firing", marked)
            if route is not None:
                self._tiers(row, route.tiers[:1], "firing", marked, "control_room")
                next_at = _earliest(next_step(route, 0, 0, self.now), next_at)
        self._history(row, "silenced", comment=f"silence {silence.id}")
        self.out.logs.append(
            Logged(
                "alert silenced",
                {
                    "alert_id": row.id,
                    "silence_id": silence.id,
                    "control_room_rows": len(self.out.plan.outbox) - before,
                },
            )
        )
        return replace(
            row,
            silenced_by=silence.id,
            route=route.name if route is not None else None,
            escalation_tier=0,
            reminders_sent=0,
            next_escalation_at=next_at,
        )

    def _cleared(self, row: AlertView, payload: dict[str, Any]) -> None:
        """The condition cleared: tell the receivers and everyone who was told it fired."""
        audience: Audience = "all"
        if row.silenced_by is not None:
            # Only the control room heard of it, and only if it was critical.
            if not is_critical_alert(row.severity, row.needs_verification):
                return
            silence = self.silence_by_id.get(row.silenced_by)
            if silence is not None:
                payload = mark_silenced(payload, silence)
            audience = "control_room"
        self._webhooks(row, "resolved", payload)
        route = self.opts.routing.route_named(row.route)
        if route is not None:
            tiers = route.tiers[: row.escalation_tier + 1]
            self._tiers(row, tiers, "resolved", payload, audience)

    # --- escalations ---

    def escalate(self, row: AlertView) -> None:
        """Next tier, or a reminder to everyone told so far; then schedule the step after.

        While a silence covers the alert only the control room is told (critical alerts); once
        it has ended, those it muted are told the alert that still fires."""
        key = (row.device_num, row.rule_id, row.point_key)
        route = self.opts.routing.route_named(row.route)
        silence = self._silence_for(row)
        critical = is_critical_alert(row.severity, row.needs_verification)
        audience: Audience = "all"
        marked: SilenceRow | None = None
        if silence is not None:
            if row.silenced_by != silence.id:
                self._history(row, "silenced", comment=f"silence {silence.id}")
            if route is None or not critical:
                self._set(
                    key, replace(row, silenced_by=silence.id, next_escalation_at=silence.ends_at)
                )
                return
            marked, audience = silence, "control_room"
        elif row.silenced_by is not None:
            self._unmuted(key, row, route, critical)
            return
        elif route is None:
            self._set(key, replace(row, next_escalation_at=None))
            return
        assert route is not None
        tier, reminders = row.escalation_tier, row.reminders_sent
        before = len(self.out.plan.outbox)
        if tier + 1 < len(route.tiers):
            tier += 1
            kind, tiers = "escalation", [route.tiers[tier]]
            self._history(row, "escalated", comment=f"tier {tier}")
        else:
            reminders += 1
            kind, tiers = "reminder", list(route.tiers)
            self._history(row, "reminded", comment=f"reminder {reminders}")
        payload = notice("firing", kind, AlertObject.of(row, at=row.opened_at))
        if marked is not None:
            payload = mark_silenced(payload, marked)
        self._tiers(row, tiers, kind, payload, audience)
        next_at = next_step(route, tier, reminders, self.now)
        self._set(
            key,
            replace(
                row,
                escalation_tier=tier,
                reminders_sent=reminders,
                next_escalation_at=next_at
                if silence is None
                else _earliest(next_at, silence.ends_at),
                silenced_by=None if silence is None else silence.id,
            ),
        )
        self.out.logs.append(
            Logged(
                "alert escalated",
                {
                    "alert_id": row.id,
                    "tier": tier,
                    "reminders": reminders,
                    "notifications": len(self.out.plan.outbox) - before,
                },
            )
        )

    def unverified(self, row: AlertView, message: tuple[str, str], waited: str) -> None:
        """A fire alarm nobody verified in time: every tier of its route hears it again, as an
        escalation that says so (while a silence covers it: the control room only)."""
        route = self.opts.routing.route_named(row.route)
        silence = self._silence_for(row)
        self._history(row, "unverified", comment=f"not verified within {waited}")
        payload = notice("firing", "escalation", AlertObject.of(row, message=message))
        before = len(self.out.plan.outbox)
        if silence is not None:
            payload = mark_silenced(payload, silence)
        if route is not None:
            audience: Audience = "all" if silence is None else "control_room"
            self._tiers(row, list(route.tiers), "escalation", payload, audience)
        self.out.logs.append(
            Logged(
                "fire alarm not verified in time; escalated",
                {
                    "alert_id": row.id,
                    "unit_id": row.unit_id,
                    "waited": waited,
                    "notifications": len(self.out.plan.outbox) - before,
                },
            )
        )

    def _unmuted(self, key: Key, row: AlertView, route: Route | None, critical: bool) -> None:
        """The silence of an alert still firing ended: tell those it muted (for a critical
        alert, everyone but the control room, which heard of it), then go on escalating."""
        self._history(row, "unsilenced", comment=f"silence {row.silenced_by} ended")
        row = replace(row, silenced_by=None)
        before = len(self.out.plan.outbox)
        payload = notice("firing", "firing", AlertObject.of(row, at=row.opened_at))
        if not critical:
            self._webhooks(row, "firing", payload)
        next_at = None
        if route is not None:
            tiers = route.tiers[: row.escalation_tier + 1]
            self._tiers(row, tiers, "firing", payload, "parties" if critical else "all")
            next_at = next_step(route, row.escalation_tier, row.reminders_sent, self.now)
        self._set(key, replace(row, next_escalation_at=next_at))
        self.out.logs.append(
            Logged(
                "alert unsilenced",
                {"alert_id": row.id, "notifications": len(self.out.plan.outbox) - before},
            )
        )

    def finish(self) -> Planned:
        plan = self.out.plan
        plan.inserts = [self.rows[k] for k in self.new]
        plan.updates = [self.rows[k] for k in self.touched]
        return self.out


def plan_transitions(
    transitions: Sequence[Transition],
    registry: Registry,
    snap: Snapshot,
    opts: DispatchOptions,
    now: dt.datetime,
) -> Planned:
    """Record each transition on its alert and queue notifications for its parties."""
    p = _Planner(opts, snap, now)
    for tr in transitions:
        device = registry.by_num.get(tr.device_num)
        if device is not None:
            p.transition(tr, device)
    return p.finish()


def plan_escalations(
    rows: Sequence[AlertView], snap: Snapshot, opts: DispatchOptions, now: dt.datetime
) -> Planned:
    """Escalate, remind, mute or unmute each due alert."""
    p = _Planner(opts, snap, now)
    for row in rows:
        p.escalate(row)
    return p.finish()


def plan_unverified(
    rows: Sequence[AlertView],
    messages: Mapping[int, tuple[str, str]],
    waited: str,
    snap: Snapshot,
    opts: DispatchOptions,
    now: dt.datetime,
) -> Planned:
    """Escalate each fire alarm left unverified `waited` ("3 min"), with its message (by
    alert id)."""
    p = _Planner(opts, snap, now)
    for row in rows:
        p.unverified(row, messages[row.id], waited)
    return p.finish()
