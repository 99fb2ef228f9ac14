"""Route an alert change to its parties: silences, routes and tiers, quiet hours, outbox rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
import structlog

from alerts.routing import Route, RoutingFile, Tier
from alerts.silences import CONTROL_ROOM, is_critical_alert, mark_silenced
from alerts.types import Receiver
from store import alerts as store_alerts
from store import silences as store_silences
from store.alerts import AlertView, ContactRow
from store.silences import SilenceRow

log = structlog.get_logger("alerts")
_ADDRESS = {"sms": "phone", "email": "email"}
# Who a row goes to: everyone the tier names; only the control room (contacts with role
# control_room, and the configured robots: the centre's group chats); or only the others.
Audience = Literal["all", "control_room", "parties"]


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    """Routing, machine receivers (webhooks) and the channel kind of each named robot."""

    routing: RoutingFile
    webhooks: Sequence[Receiver] = ()
    robot_channels: dict[str, str] = field(default_factory=dict)
    # Person channels that have a configured provider; rows for others would only give up.
    person_channels: frozenset[str] = frozenset({"sms", "email"})


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


class Dispatcher:
    """Writes the outbox rows for an alert change, in the transaction that made the change."""

    def __init__(self, opts: DispatchOptions) -> None:
        self.opts = opts
        self.tz = ZoneInfo(opts.routing.timezone)

    def _tier_rows(
        self,
        conn: psycopg.Connection[Any],
        alert: AlertView,
        tiers: Sequence[Tier],
        kind: str,
        payload: dict[str, Any],
        audience: Audience = "all",
    ) -> int:
        contacts = store_alerts.contacts_for_unit(conn, alert.unit_id)
        now = dt.datetime.now(self.tz)
        group_wait = dt.timedelta(seconds=self.opts.routing.group_wait_s)
        sent: set[tuple[str, str]] = set()
        n = 0
        for tier in tiers:
            roles = set(tier.roles)
            for c in contacts:
                if c.role not in roles:
                    continue
                if audience == "control_room" and c.role != CONTROL_ROOM:
                    continue
                if audience == "parties" and c.role == CONTROL_ROOM:
                    continue
                held = None if alert.severity == "critical" else in_quiet_hours(c, now)
                for channel in tier.channels:
                    if channel not in self.opts.person_channels:
                        continue
                    address = getattr(c, _ADDRESS[channel])
                    if not address or (c.channels and channel not in c.channels):
                        continue
                    if (channel, address) in sent:
                        continue  # one person listed in two roles hears once
                    sent.add((channel, address))
                    store_alerts.enqueue(
                        conn,
                        alert.id,
                        channel,
                        address,
                        payload,
                        kind=kind,
                        contact_id=c.id,
                        locale=c.locale,
                        group_key=f"{channel}:{address}:{alert.unit_id}",
                        not_before=held or now + group_wait,
                    )
                    n += 1
            for robot in tier.robots:
                robot_channel = self.opts.robot_channels.get(robot)
                if audience == "parties":
                    continue
                if robot_channel is None or (robot_channel, robot) in sent:
                    continue
                sent.add((robot_channel, robot))
                store_alerts.enqueue(
                    conn,
                    alert.id,
                    robot_channel,
                    robot,
                    payload,
                    kind=kind,
                    locale="zh-CN",
                    group_key=f"{robot_channel}:{robot}:{alert.unit_id}",
                    not_before=now + group_wait,
                )
                n += 1
        return n

    def _webhooks(
        self, conn: psycopg.Connection[Any], alert: AlertView, status: str, payload: dict[str, Any]
    ) -> int:
        n = 0
        for rc in self.opts.webhooks:
            if status == "resolved" and not rc.send_resolved:
                continue
            store_alerts.enqueue(conn, alert.id, rc.channel, rc.name, payload, kind=status)
            n += 1
        return n

    def opened(
        self, conn: psycopg.Connection[Any], alert: AlertView, payload: dict[str, Any]
    ) -> int:
        """A new (or re-firing) alert: tell tier 0 and schedule the escalation; when a silence
        covers it, tell only the control room (critical alerts, marked) or nobody."""
        silence = store_silences.active_for(conn, alert.unit_id, alert.device_id, alert.rule_id)
        route = self.opts.routing.route_for(alert.severity, alert.device_type, alert.rule_id)
        if silence is not None:
            return self._opened_silenced(conn, alert, route, silence, payload)
        n = self._webhooks(conn, alert, "firing", payload)
        if route is None:
            return n
        n += self._tier_rows(conn, alert, route.tiers[:1], "firing", payload)
        conn.execute(
            "UPDATE alerts SET route = %s, escalation_tier = 0, reminders_sent = 0,"
            " silenced_by = NULL, next_escalation_at = %s WHERE id = %s",
            (route.name, _next_step(route, 0, 0, dt.datetime.now(dt.UTC)), alert.id),
        )
        return n

    def _opened_silenced(
        self,
        conn: psycopg.Connection[Any],
        alert: AlertView,
        route: Route | None,
        silence: SilenceRow,
        payload: dict[str, Any],
    ) -> int:
        # The engine looks again when the silence ends (to tell those it muted), or earlier
        # for the control room's next step of a critical alert.
        next_at: dt.datetime | None = silence.ends_at
        n = 0
        if is_critical_alert(alert.severity, alert.needs_verification):
            marked = mark_silenced(payload, silence)
            n += self._webhooks(conn, alert, "firing", marked)
            if route is not None:
                n += self._tier_rows(conn, alert, route.tiers[:1], "firing", marked, "control_room")
                next_at = _earliest(_next_step(route, 0, 0, dt.datetime.now(dt.UTC)), next_at)
        store_silences.mute_alert(
            conn,
            alert.id,
            silence.id,
            next_at,
            route=route.name if route is not None else None,
            reset_route=True,
        )
        store_alerts.record_event(conn, alert.id, "silenced", comment=f"silence {silence.id}")
        log.info("alert silenced", alert_id=alert.id, silence_id=silence.id, control_room_rows=n)
        return n

    def cleared(
        self, conn: psycopg.Connection[Any], alert: AlertView, payload: dict[str, Any]
    ) -> int:
        """The condition cleared: tell the receivers and everyone who was told it fired."""
        audience: Audience = "all"
        if alert.silenced_by is not None:
            # Only the control room heard of it, and only if it was critical.
            if not is_critical_alert(alert.severity, alert.needs_verification):
                return 0
            silence = store_silences.get(conn, alert.silenced_by)
            if silence is not None:
                payload = mark_silenced(payload, silence)
            audience = "control_room"
        n = self._webhooks(conn, alert, "resolved", payload)
        route = self.opts.routing.route_named(alert.route)
        if route is not None:
            n += self._tier_rows(
                conn,
                alert,
                route.tiers[: alert.escalation_tier + 1],
                "resolved",
                payload,
                audience,
            )
        return n

    def escalate(self, conn: psycopg.Connection[Any], alert: AlertView) -> int:
        """Next tier, or a reminder to everyone told so far; then schedule the step after.

        While a silence covers the alert only the control room is told (critical alerts); once
        it has ended, those it muted are told the alert that still fires."""
        route = self.opts.routing.route_named(alert.route)
        silence = store_silences.active_for(conn, alert.unit_id, alert.device_id, alert.rule_id)
        critical = is_critical_alert(alert.severity, alert.needs_verification)
        payload: dict[str, Any] = {"version": "1", "status": "firing", "alert": alert.as_payload()}
        audience: Audience = "all"
        if silence is not None:
            if alert.silenced_by != silence.id:
                store_alerts.record_event(
                    conn, alert.id, "silenced", comment=f"silence {silence.id}"
                )
            if route is None or not critical:
                store_silences.mute_alert(conn, alert.id, silence.id, silence.ends_at)
                return 0
            payload, audience = mark_silenced(payload, silence), "control_room"
        elif alert.silenced_by is not None:
            return self._unmuted(conn, alert, route, critical, payload)
        elif route is None:
            conn.execute("UPDATE alerts SET next_escalation_at = NULL WHERE id = %s", (alert.id,))
            return 0
        assert route is not None
        tier, reminders = alert.escalation_tier, alert.reminders_sent
        if tier + 1 < len(route.tiers):
            tier += 1
            n = self._tier_rows(conn, alert, [route.tiers[tier]], "escalation", payload, audience)
            store_alerts.record_event(conn, alert.id, "escalated", comment=f"tier {tier}")
        else:
            reminders += 1
            n = self._tier_rows(conn, alert, route.tiers, "reminder", payload, audience)
            store_alerts.record_event(conn, alert.id, "reminded", comment=f"reminder {reminders}")
        next_at = _next_step(route, tier, reminders, dt.datetime.now(dt.UTC))
        conn.execute(
            "UPDATE alerts SET escalation_tier = %s, reminders_sent = %s, next_escalation_at = %s,"
            " silenced_by = %s WHERE id = %s",
            (
                tier,
                reminders,
                next_at if silence is None else _earliest(next_at, silence.ends_at),
                None if silence is None else silence.id,
                alert.id,
            ),
        )
        log.info(
            "alert escalated", alert_id=alert.id, tier=tier, reminders=reminders, notifications=n
        )
        return n

    def _unmuted(
        self,
        conn: psycopg.Connection[Any],
        alert: AlertView,
        route: Route | None,
        critical: bool,
        payload: dict[str, Any],
    ) -> int:
        """The silence of an alert still firing ended: tell those it muted (for a critical
        alert, everyone but the control room, which heard of it), then go on escalating."""
        store_silences.unmute_alert(conn, alert.id)
        store_alerts.record_event(
            conn, alert.id, "unsilenced", comment=f"silence {alert.silenced_by} ended"
        )
        n = 0 if critical else self._webhooks(conn, alert, "firing", payload)
        next_at = None
        if route is not None:
            tiers = route.tiers[: alert.escalation_tier + 1]
            n += self._tier_rows(
                conn, alert, tiers, "firing", payload, "parties" if critical else "all"
            )
            next_at = _next_step(
                route, alert.escalation_tier, alert.reminders_sent, dt.datetime.now(dt.UTC)
            )
        conn.execute("UPDATE alerts SET next_escalation_at = %s WHERE id = %s", (next_at, alert.id))
        log.info("alert unsilenced", alert_id=alert.id, notifications=n)
        return n


def _earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    """The earlier of two times, either of which may be missing."""
    return b if a is None else a if b is None else min(a, b)


def _next_step(route: Route, tier: int, reminders: int, now: dt.datetime) -> dt.datetime | None:
    """When the alert escalates next (tier `tier` was just told, at `now`), or None for never."""
    if tier + 1 < len(route.tiers):
        gap = route.tiers[tier + 1].after_min - route.tiers[tier].after_min
        return now + dt.timedelta(minutes=gap)
    if route.repeat is None or reminders >= route.repeat.max:
        return None
    return now + dt.timedelta(minutes=route.repeat.every_min)
