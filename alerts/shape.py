"""The one shape of an alert: webhook bodies, escalations, reminders, SSE events and the API.

`AlertObject` is the alert wherever it leaves the engine; `AlertNotice` is a notification's
body (the webhook's JSON, and what SMS, robots and e-mail are rendered from). The JSON schema
in docs/alert-notice.schema.json is generated from these models (tests keep it current).
Version 2 replaced version 1's two shapes (webhooks said `at` without `state`, escalations
`opened_at` with `state`) and moved `silenced` into the alert.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from store.alerts import AlertView

NOTICE_VERSION = "2"
Severity = Literal["critical", "major", "warning", "info"]
AlertState = Literal["firing", "acknowledged", "resolved", "closed"]
# What a notification is about; the same word is the outbox row's kind.
NoticeKind = Literal["firing", "resolved", "escalation", "reminder", "test"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Message(_Frozen):
    """Text in both languages."""

    en: str
    zh_CN: str = Field(serialization_alias="zh-CN", validation_alias=AliasChoices("zh_CN", "zh-CN"))


class SilenceInfo(_Frozen):
    """The silence that muted a notification: every party but the control room."""

    id: int
    reason: str
    author: str
    ends_at: str = Field(description="RFC 3339, UTC")


class AlertObject(_Frozen):
    """An alert."""

    id: int
    rule_id: str
    severity: Severity
    state: AlertState
    device_id: str
    device_type: str
    unit_id: str
    unit_name: str
    district: str
    unit_address: str = Field(description="the unit's street address")
    device_location: str = Field(description="where the device is in the unit (registry)")
    loop: int | None = Field(description="the panel's loop of the alarming point (UTD events)")
    point: int | None = Field(description="the point (detector) on that loop")
    point_text: str = Field(description="the panel's own text for the point, e.g. 3F east corridor")
    metric: str | None
    value: float | None = Field(description="the latest value (None for event rules)")
    threshold: float | None
    opened_at: dt.datetime
    at: dt.datetime = Field(
        description="when the reading or event this notice reports happened (escalations and "
        "reminders: when the alert opened; the API: its latest breach or clear)"
    )
    count: int = Field(description="breaches counted on this alert")
    message: Message
    needs_verification: bool = Field(description="a fire alarm: to be verified when closed")
    silenced: bool
    silenced_by: int | None = Field(description="the silence muting it (GET /silences/{id})")
    silence: SilenceInfo | None = Field(default=None, description="in notices it muted")
    acknowledged_at: dt.datetime | None
    cleared_at: dt.datetime | None
    closed_at: dt.datetime | None
    verification: str | None
    false_alarm_cause: str | None
    verified_at: dt.datetime | None = Field(
        default=None, description="when a person verified the fire alarm (before or at closing)"
    )
    verified_by: str | None = Field(default=None, description="who verified it")
    escalation_tier: int

    @classmethod
    def of(
        cls,
        a: AlertView,
        *,
        at: dt.datetime | None = None,
        message: tuple[str, str] | None = None,
        value: float | Literal["row"] | None = "row",
        threshold: float | Literal["row"] | None = "row",
    ) -> AlertObject:
        """From the store's row; a notice may report its own time, text, value, threshold."""
        en, zh = message if message is not None else (a.message_en, a.message_zh)
        return cls(
            id=a.id,
            rule_id=a.rule_id,
            severity=a.severity,  # type: ignore[arg-type]
            state=a.state,  # type: ignore[arg-type]
            device_id=a.device_id,
            device_type=a.device_type,
            unit_id=a.unit_id,
            unit_name=a.unit_name,
            district=a.district,
            unit_address=a.unit_address,
            device_location=a.device_location,
            loop=a.loop,
            point=a.point,
            point_text=a.point_text,
            metric=a.metric,
            value=a.value if value == "row" else value,
            threshold=a.threshold if threshold == "row" else threshold,
            opened_at=a.opened_at,
            at=at or a.cleared_at or a.last_seen_at,
            count=a.count,
            message=Message(en=en, zh_CN=zh),
            needs_verification=a.needs_verification,
            silenced=a.silenced_by is not None,
            silenced_by=a.silenced_by,
            acknowledged_at=a.acknowledged_at,
            cleared_at=a.cleared_at,
            closed_at=a.closed_at,
            verification=a.verification,
            false_alarm_cause=a.false_alarm_cause,
            verified_at=a.verified_at,
            verified_by=a.verified_by,
            escalation_tier=a.escalation_tier,
        )


class AlertNotice(_Frozen):
    """A notification's body: what happened to which alert."""

    version: Literal["2"] = "2"
    status: Literal["firing", "resolved", "test"] = Field(
        description="firing: the alert fires (opened, fired again, escalated, reminded); "
        "resolved: its condition cleared"
    )
    kind: NoticeKind
    alert: AlertObject
    unit_fire_alarms: int | None = Field(
        default=None,
        description="fire alarms: how many detectors of the unit were alarming (this one "
        "included) when it opened; 2 or more means the fire is spreading",
    )
    idempotency_key: str | None = Field(
        default=None,
        description="webhooks: the notification's key (also the Idempotency-Key header); a "
        "receiver that has seen it already has this notice",
    )


def notice(
    status: str, kind: str, alert: AlertObject, unit_fire_alarms: int | None = None
) -> dict[str, Any]:
    """A notification body as JSON-ready data."""
    body = AlertNotice(
        status=status,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        alert=alert,
        unit_fire_alarms=unit_fire_alarms,
    )
    # The key is the outbox row's, added by the webhook channel when it sends.
    exclude = (
        {"idempotency_key"}
        if unit_fire_alarms is not None
        else {"idempotency_key", "unit_fire_alarms"}
    )
    return body.model_dump(mode="json", by_alias=True, exclude=exclude)


def _engine_alert(
    rule_id: str,
    severity: Severity,
    state: AlertState,
    where: str,
    subject: str,
    message: Message,
    opened_at: dt.datetime,
    at: dt.datetime,
) -> AlertObject:
    """An alert about firesentry itself (a test message, a failing channel): no device."""
    return AlertObject(
        id=0,
        rule_id=rule_id,
        severity=severity,
        state=state,
        device_id=subject,
        device_type="-",
        unit_id=where,
        unit_name=where,
        district="",
        unit_address="",
        device_location="",
        loop=None,
        point=None,
        point_text="",
        metric=None,
        value=None,
        threshold=None,
        opened_at=opened_at,
        at=at,
        count=1,
        message=message,
        needs_verification=False,
        silenced=False,
        silenced_by=None,
        acknowledged_at=None,
        cleared_at=at if state == "resolved" else None,
        closed_at=None,
        verification=None,
        false_alarm_cause=None,
        escalation_tier=0,
    )


def sample_notice(name: str, where: str, now: dt.datetime) -> dict[str, Any]:
    """The body of `firesentry notify test`: a made-up info alert addressed to one contact."""
    message = Message(en=f"Test message for {name}", zh_CN=f"测试消息：{name}")
    alert = _engine_alert("notify_test", "info", "firing", where, "-", message, now, now)
    return notice("test", "test", alert)


def channel_notice(
    failing: bool,
    channel: str,
    since: dt.datetime,
    waiting: int,
    error: str,
    now: dt.datetime,
    timezone: dt.tzinfo,
) -> dict[str, Any]:
    """The body that tells the control room a notification channel is failing (or works
    again): rule channel_failing, critical while failing, its subject the channel."""
    local = f"{since.astimezone(timezone):%H:%M}"
    if failing:
        message = Message(
            en=f"Notification channel {channel} failing since {local}, {waiting} messages "
            f"waiting: {error}",
            zh_CN=f"通知通道 {channel} 自 {local} 起发送失败，{waiting} 条消息待发：{error}",
        )
        status: Literal["firing", "resolved"] = "firing"
    else:
        message = Message(
            en=f"Notification channel {channel} delivers again (failing since {local})",
            zh_CN=f"通知通道 {channel} 已恢复正常（自 {local} 起曾发送失败）",
        )
        status = "resolved"
    alert = _engine_alert(
        "channel_failing", "critical", status, "firesentry", channel, message, since, now
    )
    return notice(status, status, alert)


# How the control room names the parties (who could not be reached).
ROLE_NAMES: dict[str, Message] = {
    "fire_safety_manager": Message(en="fire-safety manager", zh_CN="消防安全管理人"),
    "property_manager": Message(en="property manager", zh_CN="物业负责人"),
    "grid_worker": Message(en="grid worker", zh_CN="网格员"),
    "fire_supervisor": Message(en="fire supervisor", zh_CN="消防监督员"),
    "control_room": Message(en="control room", zh_CN="值班室"),
}
_CHANNEL_NAMES = {"sms": ("SMS", "短信"), "email": ("e-mail", "邮件")}


def unreachable_notice(
    about: dict[str, Any],
    person: str,
    role: str,
    tried: Sequence[str],
    error: str,
    since: dt.datetime,
    now: dt.datetime,
    timezone: dt.tzinfo,
    more: int = 0,
) -> dict[str, Any]:
    """The body that tells the control room a party of an urgent alert cannot be reached on
    any of their channels (rule party_unreachable; `more` other alerts wait for them too)."""
    local = f"{since.astimezone(timezone):%H:%M}"
    role_name = ROLE_NAMES.get(role, Message(en=role, zh_CN=role))
    en_ch = ", ".join(_CHANNEL_NAMES.get(c, (c, c))[0] for c in tried)
    zh_ch = "、".join(_CHANNEL_NAMES.get(c, (c, c))[1] for c in tried)
    msg = about.get("message") or {}
    unit = str(about.get("unit_name") or about.get("unit_id") or "")
    en_more = f" and {more} more" if more else ""
    zh_more = f"等 {more + 1} 条" if more else ""
    message = Message(
        en=f"Cannot reach {person} ({role_name.en}, {unit}) about alert #{about.get('id')}"
        f'{en_more} "{msg.get("en", "")}": {en_ch} failing since {local}: {error}. '
        "Call them.",
        zh_CN=f"无法通知{person}（{role_name.zh_CN}，{unit}）告警 #{about.get('id')}{zh_more}"
        f"「{msg.get('zh-CN', '')}」：{zh_ch}自 {local} 起发送失败：{error}。请电话联系。",
    )
    severity: Severity = "critical" if about.get("severity") == "critical" else "major"
    alert = _engine_alert(
        "party_unreachable", severity, "firing", unit or "firesentry", person, message, since, now
    )
    return notice("firing", "firing", alert)


def notice_schema() -> dict[str, Any]:
    """The JSON schema of a notification body (docs/alert-notice.schema.json)."""
    schema = AlertNotice.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = "https://firesentry.dev/schemas/alert-notice-2.json"
    schema["title"] = "firesentry alert notice, version 2"
    return schema
