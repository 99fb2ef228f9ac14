"""Silences: who may mute what and for how long, and how a silenced alert is marked.

A silence mutes the alerts of a unit, a device and/or a rule for a window. It never mutes the
control room: a silenced critical alert (fire alarms included) still goes to the control-room
receivers (webhooks, robots, contacts with role control_room), marked with the silence; every
other party of the unit hears nothing. Non-critical silenced alerts reach nobody, but stay on
the board marked silenced. An alert still firing unacknowledged when its silence ends is then
told to the parties it muted (by the engine's escalation pass).

Every end, however given (duration_min, ends_at, a late starts_at), lies at most MAX_SILENCE
after the silence is made. A silence whose scope covers critical alerts (a whole unit, a
device whose type has a critical rule, a critical rule) needs an admin and a reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from devices.catalog import DeviceType, EventKind
from rules.model import Rule, RuleFile, Severity
from store import registry as store_registry
from store import silences as store_silences
from store.silences import NewSilence, SilenceRow

# A constant, not a setting: a cap that configuration can lift is no cap. Migration 0009 checks
# the same bound in the database.
MAX_SILENCE_DAYS = 90
MAX_SILENCE = dt.timedelta(days=MAX_SILENCE_DAYS)
CONTROL_ROOM = "control_room"
_REASON_IN_MESSAGE = 60

ErrorKind = Literal["invalid", "forbidden", "not_found", "conflict"]


class SilenceError(Exception):
    """A silence that cannot be made or ended; names the field (when one is at fault) and why."""

    def __init__(self, kind: ErrorKind, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.kind = kind
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class SilenceRequest:
    """What a caller asks for: a target, a window (one way of giving its end) and a reason."""

    reason: str
    unit_id: str | None = None
    device_id: str | None = None
    rule_id: str | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    duration_min: int | None = None


def is_critical_rule(rule: Rule) -> bool:
    """Fire alarms and every rule of severity critical."""
    return rule.severity == Severity.CRITICAL or rule.event == EventKind.FIRE_ALARM


def is_critical_alert(severity: str, needs_verification: bool) -> bool:
    """What a silence can never keep from the control room: critical alerts and fire alarms."""
    return severity == Severity.CRITICAL or needs_verification


def covers_critical(rules: RuleFile, rule_id: str | None, device_type: str | None) -> bool:
    """Whether a silence of this rule (None: every rule) on this device type could mute a
    critical alert; a unit-wide silence (no device) covers whatever its devices may raise."""
    if rule_id is not None:
        rule = next((r for r in rules.rules if r.id == rule_id), None)
        return rule is None or is_critical_rule(rule) or rule_id == "fire_alarm"
    if device_type is None:
        return True
    return any(r.applies_to(DeviceType(device_type)) and is_critical_rule(r) for r in rules.rules)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _window(req: SilenceRequest, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(start, end) of the request; every way of giving the end meets the one cap."""
    limit = now + MAX_SILENCE
    cap = f"a silence ends at most {MAX_SILENCE_DAYS} days after it is made (by {_iso(limit)})"
    if (req.ends_at is None) == (req.duration_min is None):
        raise SilenceError("invalid", "give exactly one of ends_at and duration_min", "ends_at")
    start = now if req.starts_at is None or req.starts_at < now else req.starts_at
    if req.starts_at is not None and start >= limit:
        raise SilenceError("invalid", f"{cap}; it cannot start after that", "starts_at")
    if req.duration_min is not None:
        if req.duration_min < 1:
            raise SilenceError("invalid", "a silence lasts at least 1 minute", "duration_min")
        if dt.timedelta(minutes=min(req.duration_min, 10**9)) > limit - start:
            room = int((limit - start).total_seconds() // 60)
            raise SilenceError(
                "invalid", f"{cap}: at most {room} minutes from its start", "duration_min"
            )
        return start, start + dt.timedelta(minutes=req.duration_min)
    assert req.ends_at is not None
    end = req.ends_at
    if end <= now:
        raise SilenceError(
            "invalid", f"{_iso(end)} is in the past: a silence must end after it starts", "ends_at"
        )
    if end <= start:
        raise SilenceError(
            "invalid", f"a silence must end after it starts ({_iso(start)})", "ends_at"
        )
    if end > limit:
        raise SilenceError("invalid", f"{cap}; got {_iso(end)}", "ends_at")
    return start, end


def plan_silence(
    req: SilenceRequest,
    *,
    author: str,
    admin: bool,
    rules: RuleFile,
    now: dt.datetime,
    device_type: str | None = None,
) -> NewSilence:
    """Decide a silence from plain data (its device's type, if one is named), or refuse it."""
    if req.unit_id is None and req.device_id is None and req.rule_id is None:
        raise SilenceError("invalid", "a silence needs unit_id, device_id or rule_id", "unit_id")
    start, end = _window(req, now)
    reason = req.reason.strip()
    if not reason:
        raise SilenceError("invalid", "say why (who is working on what); it is shown", "reason")
    if req.rule_id is not None and not any(r.id == req.rule_id for r in rules.rules):
        raise SilenceError("invalid", f"no rule {req.rule_id!r} in the rule file", "rule_id")
    critical = covers_critical(rules, req.rule_id, device_type)
    if critical and not admin:
        what = (
            f"rule {req.rule_id} is critical (fire alarms and critical rules)"
            if req.rule_id is not None
            else f"a silence of {'device ' + req.device_id if req.device_id else 'unit ' + str(req.unit_id)}"
            " without rule_id covers its critical alerts (fire alarms)"
        )
        raise SilenceError(
            "forbidden",
            f"{what}: it needs an admin token and a reason. Critical alerts still reach the "
            "control room, marked silenced. An operator may silence one non-critical rule "
            "(rule_id).",
        )
    return NewSilence(req.unit_id, req.device_id, req.rule_id, start, end, author, reason, critical)


def create_silence(
    conn: psycopg.Connection[Any],
    req: SilenceRequest,
    *,
    author: str,
    admin: bool,
    rules: RuleFile,
    scope: Sequence[str] | None = None,
) -> SilenceRow:
    """Check the target against the registry and the caller's units, plan, write; the row."""
    if scope is not None:
        if req.unit_id is not None and req.unit_id not in scope:
            raise SilenceError("forbidden", f"this token does not cover unit {req.unit_id}")
        if req.unit_id is None and req.device_id is None:
            raise SilenceError(
                "forbidden", "a token limited to some units must name a unit or device it covers"
            )
    with conn.transaction():
        if req.unit_id is not None and not store_registry.unit_exists(conn, req.unit_id):
            raise SilenceError("not_found", f"no unit {req.unit_id}")
        device_type = None
        if req.device_id is not None:
            device = store_registry.get_device(conn, req.device_id)
            if device is None or (scope is not None and device.unit_id not in scope):
                raise SilenceError("not_found", f"no device {req.device_id}")
            if req.unit_id is not None and device.unit_id != req.unit_id:
                raise SilenceError(
                    "invalid", f"device {req.device_id} is not in unit {req.unit_id}", "device_id"
                )
            device_type = device.type
        new = plan_silence(
            req,
            author=author,
            admin=admin,
            rules=rules,
            now=store_silences.db_now(conn),
            device_type=device_type,
        )
        row = store_silences.get(conn, store_silences.insert(conn, new))
    assert row is not None
    return row


def end_silence(
    conn: psycopg.Connection[Any],
    silence_id: int,
    *,
    actor: str,
    comment: str = "",
    scope: Sequence[str] | None = None,
) -> SilenceRow:
    """End a silence now (who and why recorded); alerts it muted that still fire are told."""
    with conn.transaction():
        row = store_silences.get(conn, silence_id, scope)
        if row is None:
            raise SilenceError("not_found", f"no silence {silence_id}")
        if row.state in ("ended", "expired"):
            raise SilenceError("conflict", f"silence {silence_id} has already {row.state}")
        store_silences.end(conn, silence_id, actor, comment.strip())
        ended = store_silences.get(conn, silence_id)
    assert ended is not None
    return ended


def silence_info(s: SilenceRow) -> dict[str, Any]:
    """The `silenced` object of a notification payload."""
    return {"id": s.id, "reason": s.reason, "author": s.author, "ends_at": _iso(s.ends_at)}


def mark_silenced(payload: dict[str, Any], s: SilenceRow) -> dict[str, Any]:
    """A copy of a notification body marked silenced: flag, silence, and both messages."""
    alert = dict(payload.get("alert") or {})
    message = dict(alert.get("message") or {})
    reason = s.reason if len(s.reason) <= _REASON_IN_MESSAGE else s.reason[:59] + "…"
    message["en"] = f"[silenced #{s.id}: {reason}] {message.get('en') or ''}".rstrip()
    message["zh-CN"] = f"【已静默 #{s.id}：{reason}】{message.get('zh-CN') or ''}"
    alert["message"] = message
    alert["silenced"] = True
    alert["silenced_by"] = s.id
    alert["silence"] = silence_info(s)
    return {**payload, "alert": alert}
