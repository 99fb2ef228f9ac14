"""`firesentry alerts …` and `firesentry notify test`: what a control-room operator types."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import Any

import psycopg

from alerts import actions
from alerts.actions import FALSE_ALARM_CAUSES, ActionError
from firesentry.config import Settings
from store import alerts as store_alerts

_OPEN = ["firing", "acknowledged", "resolved"]
_DURATION = re.compile(r"^(\d+)([mhd])$")


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    from firesentry.app import resolve_endpoints

    return psycopg.connect(resolve_endpoints(settings).dsn(), autocommit=True)


def _duration(text: str) -> dt.timedelta:
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError("use a number and m, h or d, e.g. 90m, 2h, 1d")
    n, unit = int(m.group(1)), m.group(2)
    return (
        dt.timedelta(minutes=n)
        if unit == "m"
        else dt.timedelta(hours=n)
        if unit == "h"
        else dt.timedelta(days=n)
    )


def _list(settings: Settings, args: argparse.Namespace) -> int:
    states = None if args.state == "all" else _OPEN if args.state == "open" else [args.state]
    with _connect(settings) as conn:
        rows = store_alerts.list_alerts(
            conn, states=states, unit_id=args.unit, severity=args.severity, limit=args.limit
        )
    print(f"{'id':>6}  {'state':12} {'severity':8} {'rule':24} {'device':18} {'unit':22} opened")
    for a in rows:
        state = a.state + ("*" if a.state == "resolved" and a.acknowledged_at is None else "")
        print(
            f"{a.id:>6}  {state:12} {a.severity:8} {a.rule_id:24} {a.device_id:18} "
            f"{a.unit_name[:22]:22} {a.opened_at:%Y-%m-%d %H:%M:%S}"
        )
    if any(a.state == "resolved" and a.acknowledged_at is None for a in rows):
        print("* cleared but not acknowledged yet")
    return 0


def _act(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        try:
            if args.alerts_command == "ack":
                a = actions.acknowledge(conn, args.id, args.by, args.comment)
            elif args.alerts_command == "resolve":
                a = actions.resolve(conn, args.id, args.by, args.comment)
            else:
                a = actions.close(
                    conn,
                    args.id,
                    args.by,
                    verification=args.verify,
                    cause=args.cause,
                    comment=args.comment,
                )
        except ActionError as exc:
            print(f"firesentry: {exc}")
            return 1
    print(f"alert {a.id} is now {a.state}")
    return 0


def _silence(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        try:
            sid = actions.silence(
                conn,
                author=args.by,
                reason=args.reason,
                ends_at=dt.datetime.now(dt.UTC) + args.duration,
                unit_id=args.unit,
                device_id=args.device,
                rule_id=args.rule,
            )
        except ActionError as exc:
            print(f"firesentry: {exc}")
            return 1
    print(f"silence {sid} until {dt.datetime.now(dt.UTC) + args.duration:%Y-%m-%d %H:%M} UTC")
    return 0


def _false_alarms(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        rows = conn.execute(
            "SELECT unit_id, device_id, cause, false_alarms FROM false_alarm_counts"
            " WHERE %(unit)s::text IS NULL OR unit_id = %(unit)s ORDER BY false_alarms DESC",
            {"unit": args.unit},
        ).fetchall()
    print(f"{'unit':20} {'device':20} {'cause':16} false alarms")
    for unit, device, cause, n in rows:
        print(f"{unit:20} {device:20} {cause or '-':16} {n}")
    return 0


def _notify_test(settings: Settings, args: argparse.Namespace) -> int:
    with _connect(settings) as conn:
        row = conn.execute(
            "SELECT c.id, c.name, c.phone, c.email, c.locale, coalesce(c.unit_id, c.district)"
            " FROM contacts c WHERE c.id = %s",
            (args.contact,),
        ).fetchone()
        if row is None:
            print(f"firesentry: no contact {args.contact}")
            return 1
        cid, name, phone, email, locale, where = row
        alert = {
            "id": 0,
            "rule_id": "notify_test",
            "severity": "info",
            "device_id": "-",
            "unit_id": where,
            "unit_name": where,
            "metric": None,
            "value": None,
            "threshold": None,
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "count": 1,
            "message": {"en": f"Test message for {name}", "zh-CN": f"测试消息：{name}"},
        }
        payload: dict[str, object] = {"version": "1", "status": "test", "alert": alert}
        queued = []
        for channel, address in (("sms", phone), ("email", email)):
            if address and (args.channel is None or args.channel == channel):
                store_alerts.enqueue(
                    conn,
                    None,
                    channel,
                    address,
                    payload,
                    kind="firing",
                    contact_id=cid,
                    locale=locale,
                )
                queued.append(f"{channel} to {address}")
        conn.execute("SELECT pg_notify('firesentry_outbox', '')")
    print("queued " + (", ".join(queued) or "nothing: the contact has no phone or email"))
    print("the running engine delivers it; `firesentry alerts list` does not show tests")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `alerts` and `notify` commands."""
    p = sub.add_parser("alerts", help="list, acknowledge, resolve, close and silence alerts")
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
    for name, helptext in (
        ("ack", "acknowledge: stops escalation"),
        ("resolve", "mark resolved by hand"),
        ("close", "close (fire alarms: --verify)"),
    ):
        c = asub.add_parser(name, help=helptext)
        c.add_argument("id", type=int)
        c.add_argument("--by", required=True, help="who does it (recorded)")
        c.add_argument("--comment", default="")
        if name == "close":
            c.add_argument("--verify", choices=["confirmed_fire", "false_alarm"])
            c.add_argument("--cause", choices=list(FALSE_ALARM_CAUSES))
        else:
            c.set_defaults(verify=None, cause=None)
        c.set_defaults(fn=_act)
    s = asub.add_parser("silence", help="mute a unit, device or rule for a while")
    s.add_argument("--unit")
    s.add_argument("--device")
    s.add_argument("--rule")
    s.add_argument("--for", dest="duration", type=_duration, required=True, help="e.g. 2h")
    s.add_argument("--by", required=True)
    s.add_argument("--reason", required=True)
    s.set_defaults(fn=_silence)
    fa = asub.add_parser("false-alarms", help="false-alarm counts per unit and device")
    fa.add_argument("--unit")
    fa.set_defaults(fn=_false_alarms)
    n = sub.add_parser("notify", help="notification tools")
    nsub = n.add_subparsers(dest="notify_command", required=True)
    t = nsub.add_parser("test", help="send a test message to a contact")
    t.add_argument("--contact", type=int, required=True)
    t.add_argument("--channel", choices=["sms", "email"])
    t.set_defaults(fn=_notify_test)
