"""`firesentry alerts …` and `firesentry notify …`: what a control-room operator types."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import Any

import psycopg

from alerts import actions
from alerts.actions import FALSE_ALARM_CAUSES, ActionError
from alerts.fire_119 import Fire119Options
from alerts.routing import load_routing
from alerts.shape import sample_notice
from alerts.silences import SilenceError, SilenceRequest, create_silence, end_silence
from api.privacy import mask_address, mask_in
from firesentry.channels import fire_119_options
from firesentry.config import Settings
from rules.loader import RuleFileError, load_rules
from store import alert_plan, alert_queries
from store import alerts as store_alerts
from store import channels as store_channels
from store import contacts as store_contacts
from store import false_alarms as store_false_alarms
from store import notifications as store_notifications
from store import silences as store_silences
from store.silences import SILENCE_STATES, SilenceRow

_OPEN = ["firing", "acknowledged", "resolved"]
_DURATION = re.compile(r"^(\d+)([mhd])$")


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    from firesentry.app import resolve_endpoints

    return psycopg.connect(resolve_endpoints(settings).dsn(), autocommit=True)


def _duration(text: str) -> int:
    """A duration such as 90m, 2h or 1d, in minutes."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError("use a number and m, h or d, e.g. 90m, 2h, 1d")
    return int(m.group(1)) * {"m": 1, "h": 60, "d": 24 * 60}[m.group(2)]


def _moment(text: str) -> dt.datetime:
    """An RFC 3339 time with an offset (or Z)."""
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use RFC 3339, e.g. 2026-12-01T18:00:00+08:00") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError("give an offset, e.g. 2026-12-01T18:00:00+08:00 or …Z")
    return at


def _list(settings: Settings, args: argparse.Namespace) -> int:
    states = None if args.state == "all" else _OPEN if args.state == "open" else [args.state]
    with _connect(settings) as conn:
        rows = store_alerts.list_alerts(
            conn, states=states, unit_id=args.unit, severity=args.severity, limit=args.limit
        )
    print(f"{'id':>6}  {'state':12} {'severity':8} {'rule':24} {'device':18} {'unit':22} opened")
    for a in rows:
        state = a.state + ("*" if a.state == "resolved" and a.acknowledged_at is None else "")
        muted = f"  silenced #{a.silenced_by}" if a.silenced_by is not None else ""
        print(
            f"{a.id:>6}  {state:12} {a.severity:8} {a.rule_id:24} {a.device_id:18} "
            f"{a.unit_name[:22]:22} {a.opened_at:%Y-%m-%d %H:%M:%S}{muted}"
        )
    if any(a.state == "resolved" and a.acknowledged_at is None for a in rows):
        print("* cleared but not acknowledged yet")
    return 0


def _point(a: store_alerts.AlertView) -> str:
    numbers = " ".join(
        x
        for x in (
            f"loop {a.loop}" if a.loop is not None else "",
            f"point {a.point}" if a.point is not None else "",
        )
        if x
    )
    return ": ".join(x for x in (numbers, a.point_text) if x) or "-"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _alert_fields(a: store_alerts.AlertView) -> list[tuple[str, str]]:
    """Every field of an alert, as `alerts show` prints them."""
    verification = a.verification or ("to verify" if a.needs_verification else "-")
    if a.false_alarm_cause:
        verification += f" (cause: {a.false_alarm_cause})"
    if a.verified_by:
        verification += f" by {a.verified_by} at {_fmt_time(a.verified_at)}"
    return [
        ("id", str(a.id)),
        ("state", a.state),
        ("severity", a.severity),
        ("rule", a.rule_id),
        ("message", a.message_zh or "-"),
        ("message (en)", a.message_en or "-"),
        ("unit", f"{a.unit_name or a.unit_id} ({a.unit_id})"),
        ("district", a.district or "-"),
        ("address", a.unit_address or "-"),
        ("device", f"{a.device_id} ({a.device_type})"),
        ("location", a.device_location or "-"),
        ("point", _point(a)),
        ("metric", a.metric or "-"),
        ("value", f"{_num(a.value)} (first {_num(a.first_value)})"),
        ("threshold", _num(a.threshold)),
        ("count", str(a.count)),
        ("opened", _fmt_time(a.opened_at)),
        ("last seen", _fmt_time(a.last_seen_at)),
        ("acknowledged", _fmt_time(a.acknowledged_at)),
        ("cleared", _fmt_time(a.cleared_at)),
        ("closed", _fmt_time(a.closed_at)),
        ("verification", verification),
        ("silenced by", f"silence {a.silenced_by}" if a.silenced_by is not None else "-"),
        ("route", a.route or "-"),
        ("escalation", f"tier {a.escalation_tier}, {a.reminders_sent} reminder(s)"),
        ("next escalation", _fmt_time(a.next_escalation_at)),
    ]


def _show(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        a = store_alerts.get_alert(conn, args.id)
        if a is None:
            print(f"firesentry: no alert {args.id}")
            return 1
        contacts = alert_queries.unit_contacts(conn, [a.unit_id]).get(a.unit_id, [])
        events = alert_queries.history(conn, a.id)
        sent = alert_queries.notifications(conn, a.id)
    for name, value in _alert_fields(a):
        print(f"{name:16} {value}")
    # Full numbers: the operator phones these people (to verify a fire alarm, say).
    print(f"\ncontacts ({len(contacts)})")
    for c in contacts:
        where = "district" if c.district_wide else "unit"
        print(f"  {c.role:20} {c.name:24} {c.phone or '-':16} {c.email or '-'} ({where})")
    print(f"\nhistory ({len(events)})")
    for e in events:
        value = f" value {_num(e.value)}" if e.value is not None else ""
        comment = f" — {e.comment}" if e.comment else ""
        print(f"  {_fmt_time(e.at):20} {e.kind:14} by {e.actor}{value}{comment}")
    # Receivers masked: the list goes into tickets and chats; the contacts above have numbers.
    print(f"\nnotifications ({len(sent)})")
    print(f"  {'id':>6} {'channel':9} {'receiver':20} {'contact':18} {'kind':11} {'state':9} tries")
    for n in sent:
        error = f"  last error: {mask_in(n.last_error, n.receiver)}" if n.last_error else ""
        print(
            f"  {n.id:>6} {n.channel:9} {mask_address(n.receiver)[:20]:20} "
            f"{(n.contact_name or '-')[:18]:18} {n.kind:11} {n.state:9} {n.attempts:>5}"
            f"  sent {_fmt_time(n.sent_at)}{error}"
        )
    return 0


def _act(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        try:
            if args.alerts_command == "ack":
                a = actions.acknowledge(conn, args.id, args.by, args.comment)
            elif args.alerts_command == "resolve":
                a = actions.resolve(conn, args.id, args.by, args.comment)
            else:
                act = actions.verify if args.alerts_command == "verify" else actions.close
                a = act(
                    conn,
                    args.id,
                    args.by,
                    verification=args.verify,
                    cause=args.cause,
                    comment=args.comment,
                    fire_119_options=_fire_119(settings),
                )
        except ActionError as exc:
            print(f"firesentry: {exc}")
            return 1
    verified = f", verified as {a.verification}" if a.verification else ""
    print(f"alert {a.id} is now {a.state}{verified}")
    return 0


def _fire_119(settings: Settings) -> Fire119Options:
    return fire_119_options(settings, load_routing(settings.notify.routing_file).timezone)


# The command-line option of each field a silence can be refused for.
_OPTION = {
    "unit_id": "--unit",
    "device_id": "--device",
    "rule_id": "--rule",
    "ends_at": "--until",
    "duration_min": "--for",
    "reason": "--reason",
}


def _silence_error(exc: SilenceError) -> int:
    where = f"{_OPTION.get(exc.field, exc.field)}: " if exc.field else ""
    print(f"firesentry: {where}{exc.message}")
    return 1


def _silence(settings: Settings, args: argparse.Namespace) -> int:
    try:
        rules = load_rules(settings.rules.file)
    except RuleFileError as exc:
        print(f"firesentry: {exc}")
        return 1
    req = SilenceRequest(
        args.reason,
        args.unit,
        args.device,
        args.rule,
        ends_at=args.until,
        duration_min=args.duration,
    )
    # Whoever holds the database credentials acts as admin, and gives a reason.
    with _connect(settings) as conn:
        try:
            s = create_silence(conn, req, author=args.by, admin=True, rules=rules)
        except SilenceError as exc:
            return _silence_error(exc)
    print(f"silence {s.id} until {s.ends_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC")
    if s.covers_critical:
        print(
            "it covers critical alerts: the control room still gets them, marked silenced;"
            " the unit's other parties do not"
        )
    return 0


def _fmt_time(t: dt.datetime | None) -> str:
    return "-" if t is None else f"{t.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _target(s: SilenceRow) -> str:
    parts = [
        f"unit {s.unit_id}" if s.unit_id else "",
        f"device {s.device_id}" if s.device_id else "",
    ]
    parts.append(f"rule {s.rule_id}" if s.rule_id else "every rule")
    return ", ".join(p for p in parts if p)


def _silences_list(settings: Settings, args: argparse.Namespace) -> int:
    states = SILENCE_STATES if args.state == "all" else tuple(args.state.split(","))
    unknown = sorted(set(states) - set(SILENCE_STATES))
    if unknown:
        print(f"firesentry: --state: unknown {', '.join(unknown)}; use {', '.join(SILENCE_STATES)}")
        return 1
    with _connect(settings) as conn:
        rows = store_silences.search(conn, states=states, unit_id=args.unit, limit=args.limit)
    print(f"{'id':>6}  {'state':8} {'ends':20} {'target':40} {'author':16} reason")
    for s in rows:
        print(
            f"{s.id:>6}  {s.state:8} {_fmt_time(s.ends_at):20} {_target(s)[:40]:40} "
            f"{s.author[:16]:16} {s.reason}"
        )
    return 0


def _silences_show(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        s = store_silences.get(conn, args.id)
    if s is None:
        print(f"firesentry: no silence {args.id}")
        return 1
    fields = [
        ("id", str(s.id)),
        ("state", s.state),
        ("target", _target(s)),
        (
            "covers critical",
            "yes (the control room still gets them)" if s.covers_critical else "no",
        ),
        ("starts", _fmt_time(s.starts_at)),
        ("ends", _fmt_time(s.ends_at)),
        ("author", s.author),
        ("created", _fmt_time(s.created_at)),
        ("reason", s.reason),
        ("ended", f"{_fmt_time(s.ended_at)} by {s.ended_by}" if s.ended_by else "-"),
        ("end comment", s.end_comment or "-"),
        ("alerts muted", ", ".join(map(str, s.alert_ids)) or "-"),
    ]
    for name, value in fields:
        print(f"{name:16} {value}")
    return 0


def _silences_end(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        try:
            s = end_silence(conn, args.id, actor=args.by, comment=args.comment)
        except SilenceError as exc:
            return _silence_error(exc)
    muted = f"; {len(s.alert_ids)} muted alert(s) still firing are told now" if s.alert_ids else ""
    print(f"silence {s.id} ended by {s.ended_by}{muted}")
    return 0


def _false_alarms(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        rows = store_false_alarms.false_alarm_counts(conn, args.unit)
    print(f"{'unit':20} {'device':20} {'cause':16} false alarms")
    for r in rows:
        print(f"{r.unit_id:20} {r.device_id:20} {r.cause or '-':16} {r.false_alarms}")
    return 0


def _notify_test(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        contact = store_contacts.get_contact(conn, args.contact)
        if contact is None:
            print(f"firesentry: no contact {args.contact}")
            return 1
        payload = sample_notice(contact.name, contact.where, dt.datetime.now(dt.UTC))
        queued = []
        for channel, address in (("sms", contact.phone), ("email", contact.email)):
            if address and (args.channel is None or args.channel == channel):
                alert_plan.enqueue(
                    conn,
                    None,
                    channel,
                    address,
                    payload,
                    kind="firing",
                    contact_id=contact.id,
                    locale=contact.locale,
                )
                queued.append(f"{channel} to {address}")
        store_channels.notify_outbox(conn)
    print("queued " + (", ".join(queued) or "nothing: the contact has no phone or email"))
    print("the running engine delivers it; `firesentry alerts list` does not show tests")
    return 0


def _notify_list(settings: Settings, args: argparse.Namespace) -> int:
    states = () if args.state == "all" else tuple(args.state.split(","))
    unknown = sorted(set(states) - set(store_notifications.NOTIFICATION_STATES))
    if unknown:
        choices = ", ".join(store_notifications.NOTIFICATION_STATES)
        print(f"firesentry: --state: unknown {', '.join(unknown)}; use {choices} or all")
        return 1
    with _connect(settings) as conn:
        rows = store_notifications.list_notifications(
            conn, states=states, since=args.since, limit=args.limit
        )
    print(
        f"{'id':>7} {'queued':20} {'alert':>6} {'severity':9} {'channel':9} {'receiver':20} "
        f"{'state':9} {'tries':>5}  last error"
    )
    for n in rows:
        error = mask_in(n.last_error, n.receiver) or ""
        print(
            f"{n.id:>7} {_fmt_time(n.created_at):20} {n.alert_id or '-':>6} "
            f"{n.severity or '-':9} {n.channel:9} {mask_address(n.receiver)[:20]:20} "
            f"{n.state:9} {n.attempts:>5}  {error[:80]}"
        )
    return 0


def _notify_show(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        got = store_notifications.story(conn, args.id)
    if got is None:
        print(f"firesentry: no notification {args.id}")
        return 1
    n = got.row
    print(f"notification {n.id}: {n.channel} to {mask_address(n.receiver)}, {n.kind}, {n.state}")
    print(f"  alert {n.alert_id or '-'} ({n.rule_id or '-'}, {n.severity or '-'}),"
          f" queued {_fmt_time(n.created_at)}")  # fmt: skip
    if n.sent_at:
        print(f"  sent {_fmt_time(n.sent_at)}")
    if n.retried_by:
        print(f"  resent by {n.retried_by} at {_fmt_time(n.retried_at)}")
    print(f"attempts ({len(got.attempts)}):")
    for a in got.attempts:
        error = mask_in(a.error, n.receiver) or ""
        at = f"{a.at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
        print(f"  #{a.attempt:<3} {at}  {a.outcome:9} {error[:100]}")
    if got.receipts:
        print("receipts:")
        for r in got.receipts:
            said = "delivered" if r.delivered else f"not delivered: {r.error or r.status}"
            print(f"  {_fmt_time(r.received_at)}  {r.provider}: {said}")
    if got.chain:
        print("the same notice on the person's other channels (failover):")
        for c in got.chain:
            print(f"  {c.id:>7} {c.channel:6} {mask_address(c.receiver)[:24]:24} {c.state}")
    return 0


def _notify_retry(settings: Settings, args: argparse.Namespace) -> int:
    if not args.ids and not args.given_up:
        print("firesentry: name notification ids, or --given-up [--since T]")
        return 1
    since = args.since or dt.datetime.fromtimestamp(0, dt.UTC)
    with _connect(settings) as conn:
        queued = store_notifications.retry(
            conn, by=args.by, ids=args.ids, given_up_since=since if args.given_up else None
        )
        if queued:
            store_channels.notify_outbox(conn)
    left = sorted(set(args.ids) - set(queued))
    print(f"queued again: {len(queued)}" + (f" ({', '.join(map(str, queued))})" if queued else ""))
    if left:
        print(f"not queued (not given up or cancelled, or unknown): {', '.join(map(str, left))}")
    return 0 if queued or not args.ids else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `alerts` and `notify` commands."""
    p = sub.add_parser(
        "alerts",
        help="list, show, acknowledge, resolve, verify, close and silence alerts; list and end "
        "silences",
    )
    asub = p.add_subparsers(dest="alerts_command", required=True)
    ls = asub.add_parser("list", help="alerts, newest first")
    ls.add_argument(
        "--state",
        default="open",
        choices=["open", "all", "firing", "acknowledged", "resolved", "closed"],
    )
    ls.add_argument("--unit")
    ls.add_argument("--severity", choices=["critical", "major", "warning", "info"])
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(fn=_list)
    show = asub.add_parser(
        "show", help="one alert in full: place, point, contacts, history, notifications"
    )
    show.add_argument("id", type=int)
    show.set_defaults(fn=_show)
    for name, helptext in (
        ("ack", "acknowledge: stops escalation"),
        ("resolve", "mark resolved by hand"),
        ("verify", "verify a fire alarm: confirmed_fire goes to 119 (notify.fire_119)"),
        ("close", "close (fire alarms not verified yet: --verify)"),
    ):
        c = asub.add_parser(name, help=helptext)
        c.add_argument("id", type=int)
        c.add_argument("--by", required=True, help="who does it (recorded)")
        c.add_argument("--comment", default="")
        if name in ("verify", "close"):
            c.add_argument(
                "--verify", choices=["confirmed_fire", "false_alarm"], required=name == "verify"
            )
            c.add_argument("--cause", choices=list(FALSE_ALARM_CAUSES))
        else:
            c.set_defaults(verify=None, cause=None)
        c.set_defaults(fn=_act)
    s = asub.add_parser(
        "silence", help="mute a unit, device or rule for at most 90 days (see `silences`)"
    )
    s.add_argument("--unit")
    s.add_argument("--device")
    s.add_argument("--rule")
    end = s.add_mutually_exclusive_group(required=True)
    end.add_argument("--for", dest="duration", type=_duration, help="e.g. 90m, 2h, 7d")
    end.add_argument("--until", type=_moment, help="RFC 3339, e.g. 2026-12-01T18:00:00+08:00")
    s.add_argument("--by", required=True, help="who makes it (recorded)")
    s.add_argument("--reason", required=True, help="who works on what (shown with the alerts)")
    s.set_defaults(fn=_silence)
    ss = asub.add_parser("silences", help="list, show and end silences")
    ssub = ss.add_subparsers(dest="silences_command", required=True)
    sl = ssub.add_parser("list", help="silences, newest first")
    sl.add_argument("--state", default="pending,active", help="comma-separated states, or all")
    sl.add_argument("--unit")
    sl.add_argument("--limit", type=int, default=50)
    sl.set_defaults(fn=_silences_list)
    sh = ssub.add_parser("show", help="one silence in full")
    sh.add_argument("id", type=int)
    sh.set_defaults(fn=_silences_show)
    se = ssub.add_parser("end", help="end a silence now; muted alerts still firing are told")
    se.add_argument("id", type=int)
    se.add_argument("--by", required=True, help="who ends it (recorded)")
    se.add_argument("--comment", default="")
    se.set_defaults(fn=_silences_end)
    fa = asub.add_parser("false-alarms", help="false-alarm counts per unit and device")
    fa.add_argument("--unit")
    fa.set_defaults(fn=_false_alarms)
    n = sub.add_parser("notify", help="notification tools")
    nsub = n.add_subparsers(dest="notify_command", required=True)
    t = nsub.add_parser("test", help="send a test message to a contact")
    t.add_argument("--contact", type=int, required=True)
    t.add_argument("--channel", choices=["sms", "email"])
    t.set_defaults(fn=_notify_test)
    nl = nsub.add_parser("list", help="notifications by state, newest first")
    nl.add_argument("--state", default="failed,given_up", help="comma-separated states, or all")
    nl.add_argument("--since", type=_moment, help="queued at or after (RFC 3339)")
    nl.add_argument("--limit", type=int, default=50)
    nl.set_defaults(fn=_notify_list)
    ns = nsub.add_parser("show", help="one notification: every attempt, receipt and failover")
    ns.add_argument("id", type=int)
    ns.set_defaults(fn=_notify_show)
    nr = nsub.add_parser("retry", help="send given-up notifications again (recorded)")
    nr.add_argument("ids", type=int, nargs="*", help="notification ids")
    nr.add_argument("--given-up", action="store_true", help="every given-up notification")
    nr.add_argument("--since", type=_moment, help="with --given-up: queued at or after")
    nr.add_argument("--by", required=True, help="who resends (recorded)")
    nr.set_defaults(fn=_notify_retry)
