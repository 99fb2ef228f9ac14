"""The alert planner over plain data: routes, tiers, quiet hours, silences, escalation steps."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
import yaml

from alerts.planner import (
    DispatchOptions,
    Planned,
    Snapshot,
    in_quiet_hours,
    next_step,
    plan_escalations,
    plan_transitions,
    plan_unverified,
)
from alerts.routing import RoutingFile
from alerts.shape import AlertNotice
from alerts.types import Receiver
from devices.catalog import DeviceType
from devices.registry import Device, Registry
from rules.engine import Transition
from rules.loader import load_rules
from store.alerts import AlertView, ContactRow
from store.silences import SilenceRow

RULES = {r.id: r for r in load_rules(None).rules}
ROUTING = RoutingFile.model_validate(
    yaml.safe_load("""
version: 1
timezone: Asia/Shanghai
group_wait_s: 3
routes:
  - name: critical
    match: {severity: [critical]}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager, control_room], channels: [sms, email],
         robots: [centre]}
    repeat: {every_min: 5, max: 2}
  - name: major
    match: {severity: [major]}
    tiers:
      - {after_min: 0, roles: [fire_safety_manager], channels: [sms]}
      - {after_min: 15, roles: [property_manager], channels: [sms]}
    repeat: {every_min: 60, max: 1}
""")
)
OPTS = DispatchOptions(
    ROUTING,
    [Receiver("cr", "webhook"), Receiver("quiet", "webhook", send_resolved=False)],
    {"centre": "wecom"},
)
# 12:00 in Shanghai is 04:00 UTC; 23:30 in Shanghai is 15:30 UTC.
NOON = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)
NIGHT = dt.datetime(2026, 12, 1, 15, 30, tzinfo=dt.UTC)
PANEL = Device(1, "utd-1", "u1", DeviceType.UTD, unit_name="Riverside Mall", district="D1")
MONITOR = Device(2, "em-1", "u1", DeviceType.ELECTRICAL, unit_name="Riverside Mall", district="D1")
REGISTRY = Registry.of([PANEL, MONITOR])


def _contact(
    cid: int,
    role: str,
    phone: str | None = None,
    email: str | None = None,
    channels: tuple[str, ...] = (),
    quiet: tuple[int, int] | None = None,
) -> ContactRow:
    q = (None, None) if quiet is None else (dt.time(quiet[0]), dt.time(quiet[1]))
    return ContactRow(cid, f"c{cid}", role, phone, email, "zh-CN", channels, q[0], q[1])


MANAGER = _contact(1, "fire_safety_manager", "+861", "m@x.cn")
PROPERTY = _contact(2, "property_manager", "+862")
CONTROL = _contact(3, "control_room", "+869")
CONTACTS = {"u1": [MANAGER, PROPERTY, CONTROL]}


def _tr(rule_id: str, device: Device, opened: bool = True, value: float = 420.0) -> Transition:
    ts = int(NOON.timestamp() * 1000)
    return Transition(RULES[rule_id], device.num, ts, value, 300.0, opened)


def _plan(
    trs: list[Transition],
    *,
    alerts: dict[tuple[int, str, str], AlertView] | None = None,
    silences: tuple[SilenceRow, ...] = (),
    contacts: dict[str, list[ContactRow]] | None = None,
    now: dt.datetime = NOON,
) -> Planned:
    snap = Snapshot(
        alerts or {}, range(100, 200), silences, CONTACTS if contacts is None else contacts
    )
    return plan_transitions(trs, REGISTRY, snap, OPTS, now)


def _to(p: Planned) -> list[tuple[str, str, str]]:
    return [(o.channel, o.receiver, o.kind) for o in p.plan.outbox]


def _silence(sid: int = 7, **scope: Any) -> SilenceRow:
    return SilenceRow(
        sid,
        scope.get("unit_id"),
        scope.get("device_id"),
        scope.get("rule_id"),
        NOON - dt.timedelta(hours=1),
        NOON + dt.timedelta(hours=1),
        "Admin Zhou",
        "panel maintenance",
        NOON - dt.timedelta(hours=1),
        True,
        None,
        None,
        "",
        scope.get("state", "active"),
        "u1",
        (),
    )


@pytest.mark.parametrize(
    ("rule_id", "device", "expected"),
    [
        (
            "fire_alarm",
            PANEL,
            [
                ("webhook", "cr", "firing"),
                ("webhook", "quiet", "firing"),
                ("sms", "+861", "firing"),
                ("email", "m@x.cn", "firing"),
                ("sms", "+869", "firing"),
                ("wecom", "centre", "firing"),
            ],
        ),
        (
            "residual_current_high",
            MONITOR,
            [
                ("webhook", "cr", "firing"),
                ("webhook", "quiet", "firing"),
                ("sms", "+861", "firing"),
            ],
        ),
    ],
)
def test_an_opened_alert_reaches_its_routes_first_tier_and_every_webhook(
    rule_id: str, device: Device, expected: list[tuple[str, str, str]]
) -> None:
    """A fire alarm (critical route) reaches the manager by SMS and e-mail, the control room and
    its robot; a major alert only the manager by SMS; both reach every webhook at once."""
    p = _plan([_tr(rule_id, device)])
    assert _to(p) == expected
    assert p.opened == 1 and [h.kind for h in p.plan.history] == ["opened"]
    assert [o.not_before for o in p.plan.outbox if o.channel == "webhook"] == [None, None]
    waits = {o.not_before for o in p.plan.outbox if o.channel != "webhook"}
    assert waits == {NOON + dt.timedelta(seconds=3)}  # group_wait_s


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        (_contact(1, "fire_safety_manager", "+861", "m@x.cn", channels=("sms",)), ["sms"]),
        (_contact(1, "fire_safety_manager", None, "m@x.cn"), ["email"]),
        (_contact(1, "fire_safety_manager"), []),
        (_contact(1, "grid_worker", "+861"), []),
    ],
)
def test_a_person_is_told_on_the_channels_they_list_and_have_an_address_for(
    contact: ContactRow, expected: list[str]
) -> None:
    """Channels are the tier's, narrowed to those the contact lists and has an address for; a
    role the tier does not name is not told."""
    p = _plan([_tr("fire_alarm", PANEL)], contacts={"u1": [contact]})
    assert [o.channel for o in p.plan.outbox if o.contact_id == 1] == expected


def test_one_person_in_two_roles_hears_once() -> None:
    """A manager who is also the control room (same phone) gets one SMS, not two."""
    twice = [MANAGER, replace(CONTROL, id=4, phone=MANAGER.phone, email=None)]
    p = _plan([_tr("fire_alarm", PANEL)], contacts={"u1": twice})
    assert [o.receiver for o in p.plan.outbox if o.channel == "sms"] == ["+861"]


@pytest.mark.parametrize(
    ("quiet", "now", "rule_id", "device", "held_until"),
    [
        (
            (22, 7),
            NIGHT,
            "residual_current_high",
            MONITOR,
            dt.datetime(2026, 12, 1, 23, 0, tzinfo=dt.UTC),
        ),
        ((22, 7), NOON, "residual_current_high", MONITOR, None),
        ((22, 7), NIGHT, "fire_alarm", PANEL, None),  # critical: never held
        (
            (9, 17),
            NOON,
            "residual_current_high",
            MONITOR,
            dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC),
        ),
        ((9, 9), NOON, "residual_current_high", MONITOR, None),  # start == end: no quiet hours
    ],
)
def test_quiet_hours_hold_all_but_critical_alerts_until_they_end(
    quiet: tuple[int, int],
    now: dt.datetime,
    rule_id: str,
    device: Device,
    held_until: dt.datetime | None,
) -> None:
    """A message inside the contact's quiet hours (local time, across midnight too) waits for
    their end; critical alerts and contacts without quiet hours go after group_wait_s."""
    c = _contact(1, "fire_safety_manager", "+861", quiet=quiet)
    tr = replace(_tr(rule_id, device), ts_ms=int(now.timestamp() * 1000))
    p = _plan([tr], contacts={"u1": [c]}, now=now)
    (row,) = [o for o in p.plan.outbox if o.contact_id == 1]
    expected = held_until or now + dt.timedelta(seconds=3)
    assert row.not_before is not None and row.not_before.astimezone(dt.UTC) == expected


def test_quiet_hours_end_is_local() -> None:
    """in_quiet_hours answers in the contact's local time."""
    local = NIGHT.astimezone(dt.timezone(dt.timedelta(hours=8)))
    end = in_quiet_hours(_contact(1, "x", quiet=(22, 7)), local)
    assert end is not None and (end.hour, end.date()) == (7, dt.date(2026, 12, 2))


def test_breaches_of_one_alert_in_one_batch_open_once_then_count() -> None:
    """Three breaches of one (device, rule) in a batch open one alert (new id, count 3) and
    notify once; a clear in between and a breach after it fire it again on the same row."""
    trs = [_tr("residual_current_high", MONITOR)] * 3
    p = _plan(trs)
    assert (p.opened, p.repeated, len(p.plan.inserts), p.plan.inserts[0].count) == (1, 2, 1, 3)
    assert p.plan.inserts[0].id == 100 and len(p.plan.outbox) == 3
    trs = [
        _tr("residual_current_high", MONITOR),
        _tr("residual_current_high", MONITOR, opened=False, value=10.0),
        _tr("residual_current_high", MONITOR),
    ]
    p = _plan(trs)
    assert [h.kind for h in p.plan.history] == ["opened", "cleared", "refired"]
    assert (len(p.plan.inserts), p.plan.updates) == (1, [])
    assert p.plan.inserts[0].state == "firing" and p.plan.inserts[0].cleared_at is None
    resolved = [o for o in p.plan.outbox if o.kind == "resolved"]
    assert [o.receiver for o in resolved] == ["cr", "+861"]  # "quiet" takes no resolved


def test_a_breach_of_an_acknowledged_alert_counts_but_tells_nobody() -> None:
    """An open, acknowledged alert breaching again gets count + 1, stays acknowledged, no rows."""
    p = _plan([_tr("residual_current_high", MONITOR)])
    open_row = replace(p.plan.inserts[0], state="acknowledged")
    p = _plan(
        [_tr("residual_current_high", MONITOR)], alerts={(2, "residual_current_high", ""): open_row}
    )
    assert (p.repeated, p.plan.outbox, p.plan.history) == (1, [], [])
    assert p.plan.updates[0].state == "acknowledged" and p.plan.updates[0].count == 2


def test_a_clear_without_an_open_alert_does_nothing() -> None:
    """A clear for a key with no firing alert writes nothing."""
    p = _plan([_tr("residual_current_high", MONITOR, opened=False)])
    assert p.plan.empty() and p.cleared == 0


@pytest.mark.parametrize(
    ("scope", "rule_id", "device", "receivers"),
    [
        ({"unit_id": "u1"}, "fire_alarm", PANEL, ["cr", "quiet", "+869", "centre"]),
        ({"unit_id": "u1"}, "residual_current_high", MONITOR, []),
        (
            {"device_id": "em-1"},
            "fire_alarm",
            PANEL,
            ["cr", "quiet", "+861", "m@x.cn", "+869", "centre"],
        ),
        ({"rule_id": "residual_current_high"}, "residual_current_high", MONITOR, []),
        ({"unit_id": "u2"}, "residual_current_high", MONITOR, ["cr", "quiet", "+861"]),
        (
            {"unit_id": "u1", "state": "expired"},
            "residual_current_high",
            MONITOR,
            ["cr", "quiet", "+861"],
        ),
    ],
)
def test_a_silence_mutes_everyone_but_the_control_room_and_only_what_it_names(
    scope: dict[str, Any], rule_id: str, device: Device, receivers: list[str]
) -> None:
    """Under a matching active silence a critical alert reaches only webhooks, control-room
    contacts and robots (marked silenced); a non-critical one reaches nobody; a silence of
    another device, unit, or one that has expired mutes nothing."""
    s = _silence(**scope)
    p = _plan([_tr(rule_id, device)], silences=(s,))
    assert [o.receiver for o in p.plan.outbox] == receivers
    muted = (
        s.state == "active"
        and scope.get("unit_id", "u1") == "u1"
        and (scope.get("device_id", device.id) == device.id)
    )
    assert (p.plan.inserts[0].silenced_by == s.id) is muted
    for o in p.plan.outbox:
        alert = AlertNotice.model_validate(o.payload).alert
        assert alert.silenced is muted and (alert.silence is not None) is muted


def test_every_notice_has_the_one_documented_shape() -> None:
    """Firing and resolved bodies validate against AlertNotice (version 2) and say the truth."""
    trs = [_tr("fire_alarm", PANEL), _tr("fire_alarm", PANEL, opened=False)]
    p = _plan(trs)
    bodies = [AlertNotice.model_validate(o.payload) for o in p.plan.outbox]
    assert {(b.version, b.status, b.kind) for b in bodies} == {
        ("2", "firing", "firing"),
        ("2", "resolved", "resolved"),
    }
    firing = next(b for b in bodies if b.status == "firing").alert
    assert (firing.id, firing.device_id, firing.unit_name, firing.district) == (
        100,
        "utd-1",
        "Riverside Mall",
        "D1",
    )
    assert firing.needs_verification and firing.value is None and firing.opened_at == NOON


def _firing(rule_id: str, device: Device, **changes: Any) -> AlertView:
    row = _plan([_tr(rule_id, device)]).plan.inserts[0]
    return replace(row, **changes)


def _escalate(
    row: AlertView, silences: tuple[SilenceRow, ...] = (), now: dt.datetime = NOON
) -> Planned:
    snap = Snapshot({(row.device_num, row.rule_id, row.point_key): row}, (), silences, CONTACTS)
    return plan_escalations([row], snap, OPTS, now)


@pytest.mark.parametrize(
    ("rule_id", "device", "tier", "reminders", "kind", "to", "next_in_min", "tier_after"),
    [
        ("residual_current_high", MONITOR, 0, 0, "escalation", ["+862"], 60, 1),
        ("residual_current_high", MONITOR, 1, 0, "reminder", ["+861", "+862"], None, 1),
        ("fire_alarm", PANEL, 0, 0, "reminder", ["+861", "m@x.cn", "+869", "centre"], 5, 0),
        ("fire_alarm", PANEL, 0, 1, "reminder", ["+861", "m@x.cn", "+869", "centre"], None, 0),
    ],
)
def test_an_unacknowledged_alert_climbs_its_tiers_then_reminds_up_to_max(
    rule_id: str,
    device: Device,
    tier: int,
    reminders: int,
    kind: str,
    to: list[str],
    next_in_min: float | None,
    tier_after: int,
) -> None:
    """Each due step tells the next tier (escalation) or, past the last, everyone so far
    (reminder), and schedules the next step: tier gap, repeat.every_min, or never after max."""
    row = _firing(rule_id, device, escalation_tier=tier, reminders_sent=reminders)
    p = _escalate(row)
    assert [(o.receiver, o.kind) for o in p.plan.outbox] == [(r, kind) for r in to]
    (after,) = p.plan.updates
    expected = None if next_in_min is None else NOON + dt.timedelta(minutes=next_in_min)
    assert (after.escalation_tier, after.next_escalation_at) == (tier_after, expected)
    assert [h.kind for h in p.plan.history] == ["escalated" if kind == "escalation" else "reminded"]
    body = AlertNotice.model_validate(p.plan.outbox[0].payload)
    assert body.kind == kind and body.alert.at == body.alert.opened_at


def test_next_step_matches_the_route() -> None:
    """next_step: the next tier's gap, then reminders every repeat.every_min, then none."""
    major = ROUTING.route_named("major")
    assert major is not None
    assert next_step(major, 0, 0, NOON) == NOON + dt.timedelta(minutes=15)
    assert next_step(major, 1, 0, NOON) == NOON + dt.timedelta(minutes=60)
    assert next_step(major, 1, 1, NOON) is None


def test_a_silence_that_ended_tells_those_it_muted() -> None:
    """A critical alert muted while it fired: when its silence is over, everyone but the control
    room (who heard) is told, unmarked; a major alert's webhooks are told too."""
    fire = _firing("fire_alarm", PANEL, silenced_by=7)
    p = _escalate(fire)
    assert [o.receiver for o in p.plan.outbox] == ["+861", "m@x.cn"]
    assert [h.kind for h in p.plan.history] == ["unsilenced"]
    assert p.plan.updates[0].silenced_by is None
    major = _firing("residual_current_high", MONITOR, silenced_by=7)
    assert [o.receiver for o in _escalate(major).plan.outbox] == ["cr", "quiet", "+861"]


def test_a_silence_still_holding_delays_a_non_critical_alert_until_it_ends() -> None:
    """A due major alert under an active silence is told to nobody and looks again at its end."""
    s = _silence(unit_id="u1")
    p = _escalate(_firing("residual_current_high", MONITOR), (s,))
    assert p.plan.outbox == [] and p.plan.updates[0].next_escalation_at == s.ends_at
    assert [h.kind for h in p.plan.history] == ["silenced"]


@pytest.mark.parametrize(
    ("silenced", "to"),
    [
        (False, ["+861", "m@x.cn", "+869", "centre"]),  # every party of the critical route
        (True, ["+869", "centre"]),  # a silence holds it to the control room
    ],
)
def test_a_fire_alarm_left_unverified_is_told_again_saying_so(
    silenced: bool, to: list[str]
) -> None:
    """The unverified escalation goes to every tier of the route, as an escalation whose text
    says nobody verified it, with one history line; the alert row is left as it is."""
    fire = _firing("fire_alarm", PANEL, escalation_tier=0, reminders_sent=1)
    silences = (_silence(unit_id="u1"),) if silenced else ()
    snap = Snapshot({(fire.device_num, fire.rule_id, fire.point_key): fire}, (), silences, CONTACTS)
    message = ("not verified within 3 min", "火警3 分钟内未确认")
    p = plan_unverified([fire], {fire.id: message}, "3 min", snap, OPTS, NOON)
    assert [o.receiver for o in p.plan.outbox] == to
    assert {o.kind for o in p.plan.outbox} == {"escalation"}
    body = AlertNotice.model_validate(p.plan.outbox[0].payload)
    assert body.alert.message.zh_CN.endswith("火警3 分钟内未确认")
    assert body.alert.silenced is silenced
    assert [(h.kind, h.comment) for h in p.plan.history] == [
        ("unverified", "not verified within 3 min")
    ]
    assert p.plan.updates == [] and p.plan.inserts == []
