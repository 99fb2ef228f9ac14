"""What operators do to alerts: acknowledge, resolve, verify (a confirmed fire goes to 119),
close (a fire alarm verified), silence."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import psycopg

from alerts import fire_119
from alerts.fire_119 import Fire119Options
from alerts.silences import SilenceError, SilenceRequest, create_silence
from rules.loader import load_rules
from rules.model import RuleFile
from store import alert_actions as store_actions
from store import alerts as store_alerts
from store.alerts import AlertView

Verification = Literal["confirmed_fire", "false_alarm"]
FALSE_ALARM_CAUSES = ("test", "dust_steam", "equipment_fault", "malicious", "unknown")


class ActionError(Exception):
    """An action that does not apply to the alert as it is; the message says why."""


def _get(conn: psycopg.Connection[Any], alert_id: int) -> AlertView:
    alert = store_alerts.get_alert(conn, alert_id)
    if alert is None:
        raise ActionError(f"no alert {alert_id}")
    return alert


def acknowledge(
    conn: psycopg.Connection[Any], alert_id: int, actor: str, comment: str = ""
) -> AlertView:
    """Take an alert on: escalation stops; a cleared alert stops asking for attention."""
    with conn.transaction():
        if not store_actions.acknowledge(conn, alert_id, actor):
            a = _get(conn, alert_id)
            raise ActionError(
                f"alert {alert_id} is {a.state} and already acknowledged"
                if a.acknowledged_at
                else f"alert {alert_id} is {a.state}"
            )
        cancelled = store_actions.cancel_followups(conn, alert_id)
        note = comment + (f" ({cancelled} pending escalations cancelled)" if cancelled else "")
        store_alerts.record_event(conn, alert_id, "acknowledged", actor=actor, comment=note.strip())
        return _get(conn, alert_id)


def resolve(
    conn: psycopg.Connection[Any], alert_id: int, actor: str, comment: str = ""
) -> AlertView:
    """Mark an alert resolved by hand (the cause was dealt with on site)."""
    with conn.transaction():
        if not store_actions.resolve(conn, alert_id, actor):
            raise ActionError(
                f"alert {alert_id} is {_get(conn, alert_id).state}; only firing or "
                "acknowledged alerts can be resolved"
            )
        store_actions.cancel_followups(conn, alert_id)
        store_alerts.record_event(conn, alert_id, "resolved", actor=actor, comment=comment)
        return _get(conn, alert_id)


def _check_verification(verification: Verification, cause: str | None) -> None:
    if verification == "false_alarm" and cause not in FALSE_ALARM_CAUSES:
        raise ActionError(f"a false alarm needs a cause: one of {', '.join(FALSE_ALARM_CAUSES)}")
    if verification != "false_alarm" and cause is not None:
        raise ActionError("a cause is given only for a false alarm")


def _verify(
    conn: psycopg.Connection[Any],
    a: AlertView,
    actor: str,
    verification: Verification,
    cause: str | None,
    comment: str,
    opts: Fire119Options,
) -> AlertView:
    """Record the verification on an open, unverified alert; forward a confirmed fire."""
    _check_verification(verification, cause)
    if not store_actions.verify(conn, a.id, actor, verification=verification, cause=cause):
        raise ActionError(f"alert {a.id} is closed")  # the caller checked it was unverified
    store_actions.cancel_followups(conn, a.id)
    what = verification + (f" ({cause})" if cause else "")
    store_alerts.record_event(
        conn, a.id, "verified", actor=actor, comment=" ".join(x for x in (what, comment) if x)
    )
    verified = _get(conn, a.id)
    if verification == "confirmed_fire":
        fire_119.forward(conn, verified, "confirmed_fire", opts)
    return verified


def _already_verified(a: AlertView) -> str:
    at = a.verified_at.isoformat(timespec="seconds") if a.verified_at else "?"
    return f"alert {a.id} was verified as {a.verification} by {a.verified_by} at {at}"


def verify(
    conn: psycopg.Connection[Any],
    alert_id: int,
    actor: str,
    *,
    verification: Verification,
    cause: str | None = None,
    comment: str = "",
    fire_119_options: Fire119Options | None = None,
) -> AlertView:
    """Verify an open alert as a confirmed fire (forwarded to 119 when configured) or a false
    alarm with its cause; it counts as acknowledged. Once verified it stays so."""
    with conn.transaction():
        a = _get(conn, alert_id)
        if a.state == "closed":
            raise ActionError(f"alert {alert_id} is closed")
        if a.verification is not None:
            raise ActionError(_already_verified(a))
        opts = fire_119_options or Fire119Options()
        return _verify(conn, a, actor, verification, cause, comment, opts)


def close(
    conn: psycopg.Connection[Any],
    alert_id: int,
    actor: str,
    *,
    verification: Verification | None = None,
    cause: str | None = None,
    comment: str = "",
    fire_119_options: Fire119Options | None = None,
) -> AlertView:
    """Close an alert; a fire alarm must be verified, before or here, as confirmed fire or
    false alarm (with cause). A confirmed fire verified here is forwarded to 119 too."""
    with conn.transaction():
        a = _get(conn, alert_id)
        if a.state == "closed":
            raise ActionError(f"alert {alert_id} is already closed")
        if a.verification is not None:
            if verification is not None and (verification, cause) != (
                a.verification,
                a.false_alarm_cause,
            ):
                raise ActionError(_already_verified(a) + "; close it without a verification")
        elif verification is not None:
            opts = fire_119_options or Fire119Options()
            a = _verify(conn, a, actor, verification, cause, "", opts)
        elif a.needs_verification:
            raise ActionError(
                f"alert {alert_id} is a fire alarm: verify it as confirmed_fire or "
                "false_alarm before closing"
            )
        elif cause is not None:
            raise ActionError("a cause is given only for a false alarm")
        store_actions.close(conn, alert_id, actor)
        store_actions.cancel_followups(conn, alert_id)
        what = ""
        if verification is not None:
            what = verification + (f" ({cause})" if cause else "")
        store_alerts.record_event(
            conn, alert_id, "closed", actor=actor, comment=" ".join(x for x in (what, comment) if x)
        )
        return _get(conn, alert_id)


def silence(
    conn: psycopg.Connection[Any],
    *,
    author: str,
    reason: str,
    ends_at: dt.datetime,
    starts_at: dt.datetime | None = None,
    unit_id: str | None = None,
    device_id: str | None = None,
    rule_id: str | None = None,
    rules: RuleFile | None = None,
) -> int:
    """Mute alerts of a unit, device or rule until ends_at (capped); return the silence's id.

    For callers that hold the database credentials (the CLI, tests), who act as admin; the API
    calls alerts.silences.create_silence with the token's role and units.
    """
    req = SilenceRequest(reason, unit_id, device_id, rule_id, starts_at=starts_at, ends_at=ends_at)
    try:
        row = create_silence(conn, req, author=author, admin=True, rules=rules or load_rules(None))
    except SilenceError as exc:
        raise ActionError(str(exc)) from None
    return row.id
