"""Every request parameter and response body of the API, as pydantic models.

Query models forbid unknown parameters (a typo is a 400, not a silently ignored filter); the
OpenAPI document is generated from these models and the route table in api/app.py.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from alerts.actions import FALSE_ALARM_CAUSES
from alerts.shape import AlertObject, Message, Severity
from devices.catalog import METRIC_BY_NAME, DeviceType, EventKind
from store.registry import DeviceView

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="a unit or device id")]
RuleId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="a rule id")]
StateFilter = Literal["open", "firing", "acknowledged", "resolved", "closed"]
DeviceStatus = Literal["online", "offline", "unknown"]
Bucket = Literal["raw", "1m", "1h", "1d"]
FalseAlarmCause = Literal["test", "dust_steam", "equipment_fault", "malicious", "unknown"]
assert set(FalseAlarmCause.__args__) == set(FALSE_ALARM_CAUSES)  # type: ignore[attr-defined]

BUCKETS: dict[str, dt.timedelta] = {
    "1m": dt.timedelta(minutes=1),
    "1h": dt.timedelta(hours=1),
    "1d": dt.timedelta(days=1),
}
MAX_BUCKETS = 50_000
MAX_EXPORT_DAYS = 400


def _comma_list(value: Any) -> Any:
    """`a,b` (or a repeated parameter, joined the same way) as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _metric(name: str) -> str:
    if name not in METRIC_BY_NAME:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(METRIC_BY_NAME))}")
    return name


def now() -> dt.datetime:
    """The current time (UTC)."""
    return dt.datetime.now(dt.UTC)


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Range(_Query):
    """A half-open time range [from, to): RFC 3339 with an offset, or epoch seconds."""

    start: AwareDatetime | None = Field(default=None, alias="from", description="inclusive")
    end: AwareDatetime | None = Field(default=None, alias="to", description="exclusive; now")

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("'from' must be before 'to'")
        return self

    def resolved(self, default_span: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
        """(from, to) with the defaults: to = now, from = to − default_span."""
        end = self.end or now()
        start = self.start or end - default_span
        if start >= end:
            raise ValueError("'from' must be before 'to'")
        return start, end


class AlertQuery(_Range):
    """Filters of GET /alerts; from/to apply to when the alert opened."""

    state: Annotated[list[StateFilter], BeforeValidator(_comma_list)] = Field(
        default_factory=list, description="comma-separated; open = firing, acknowledged, resolved"
    )
    severity: Annotated[list[Severity], BeforeValidator(_comma_list)] = Field(
        default_factory=list, description="comma-separated"
    )
    unit: Id | None = None
    device: Id | None = Field(default=None, description="a device id")
    rule: RuleId | None = Field(default=None, description="a rule id, e.g. fire_alarm")
    district: str | None = Field(default=None, max_length=100)
    device_type: DeviceType | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, description="next_cursor of the previous page")

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, v: str | None) -> str | None:
        if v is not None:
            decode_cursor(v)
        return v

    def states(self) -> list[str]:
        """The states asked for, with `open` expanded."""
        out: list[str] = []
        for s in self.state:
            for x in ("firing", "acknowledged", "resolved") if s == "open" else (s,):
                if x not in out:
                    out.append(x)
        return out


def encode_cursor(opened_at: dt.datetime, alert_id: int) -> str:
    """An opaque keyset cursor."""
    return base64.urlsafe_b64encode(f"{opened_at.isoformat()}|{alert_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """The (opened_at, id) of a cursor, or ValueError."""
    try:
        at, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        when = dt.datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError
        return when, int(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("cursor is not one this API returned") from None


class UnitsQuery(_Query):
    """Filters of GET /units."""

    district: str | None = Field(default=None, max_length=100)


class DevicesQuery(_Query):
    """Filters of GET /devices."""

    status: DeviceStatus | None = None
    unit: Id | None = None
    type: DeviceType | None = None


class _Source(_Range):
    device: Id | None = None
    unit: Id | None = None

    @model_validator(mode="after")
    def _one_source(self) -> _Source:
        if (self.device is None) == (self.unit is None):
            raise ValueError("give exactly one of 'device' and 'unit'")
        return self


class TelemetryQuery(_Source):
    """GET /telemetry: one metric of a device (or of every device of a unit)."""

    metric: Annotated[str, BeforeValidator(str)] = Field(description="a metric name")
    bucket: Bucket = Field(default="1m", description="raw readings, or min/max/avg/last per bucket")
    limit: int = Field(default=10_000, ge=1, le=MAX_BUCKETS, description="points at most")

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        return _metric(v)

    @model_validator(mode="after")
    def _not_too_many_buckets(self) -> TelemetryQuery:
        width = BUCKETS.get(self.bucket)
        if width is not None and self.start is not None:
            span = (self.end or now()) - self.start
            if span / width > MAX_BUCKETS:
                raise ValueError(
                    f"the range holds {int(span / width)} buckets of {self.bucket}, more than "
                    f"{MAX_BUCKETS}: choose a larger bucket or a shorter range"
                )
        return self


class ExportQuery(_Source):
    """GET /telemetry.csv: readings of a device or unit, all metrics unless named."""

    metric: Annotated[list[str], BeforeValidator(_comma_list)] = Field(
        default_factory=list, description="comma-separated metric names; empty: all"
    )

    @field_validator("metric")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return [_metric(m) for m in v]

    @model_validator(mode="after")
    def _bounded(self) -> ExportQuery:
        if self.start is not None and (self.end or now()) - self.start > dt.timedelta(
            days=MAX_EXPORT_DAYS
        ):
            raise ValueError(f"an export covers at most {MAX_EXPORT_DAYS} days")
        return self


class StatsQuery(_Range):
    """GET /stats/alerts: alerts opened in [from, to) (default: the last 30 days)."""

    group: Literal["unit", "district"] = "unit"


class UnitEventsQuery(_Query):
    """GET /units/{id}/events: the unit's device events, newest first."""

    since: AwareDatetime | None = Field(default=None, description="default: 7 days ago")
    kind: Annotated[list[EventKind], BeforeValidator(_comma_list)] = Field(
        default_factory=list, description="comma-separated event kinds; empty: all"
    )
    limit: int = Field(default=200, ge=1, le=1000)


class StreamQuery(_Query):
    """GET /stream; the Last-Event-ID header wins over last_event_id."""

    last_event_id: int | None = Field(default=None, ge=0, description="resume after this id")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommentBody(_Body):
    """Body of ack and resolve (may be empty)."""

    comment: str = Field(default="", max_length=2000)


class _Verification(_Body):
    verification: Literal["confirmed_fire", "false_alarm"] | None = None
    cause: FalseAlarmCause | None = None
    comment: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _cause_with_false_alarm(self) -> _Verification:
        if self.verification == "false_alarm" and self.cause is None:
            raise ValueError(f"a false alarm needs a cause: one of {', '.join(FALSE_ALARM_CAUSES)}")
        if self.verification != "false_alarm" and self.cause is not None:
            raise ValueError("a cause is given only with verification false_alarm")
        return self


class CloseBody(_Verification):
    """Body of close: fire alarms must be verified (here or before); a false alarm needs a
    cause."""


class VerifyBody(_Verification):
    """Body of verify: confirmed_fire, or false_alarm with a cause."""

    verification: Literal["confirmed_fire", "false_alarm"]


# --- responses ---


class _Out(BaseModel):
    # Responses are read from the store's rows and views by attribute name, not copied by hand.
    model_config = ConfigDict(frozen=True, from_attributes=True)


# The API's alert is the one alert shape (webhooks, escalations, SSE events): alerts.shape.
AlertOut = AlertObject


class AlertPage(_Out):
    """A page of alerts, newest first."""

    items: list[AlertOut]
    next_cursor: str | None


class AlertEventOut(_Out):
    """One change of an alert: who did what, when."""

    id: int
    stream_id: int | None = Field(validation_alias=AliasChoices("stream_id", "stream_seq"))
    at: dt.datetime
    kind: str
    actor: str
    value: float | None
    comment: str


class NotificationOut(_Out):
    """A notification of an alert and what became of it."""

    id: int
    channel: str
    receiver: str
    contact_name: str | None
    kind: str
    state: str
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None
    retried_by: str | None = Field(description="the token that last sent it again by hand")
    retried_at: dt.datetime | None


class ContactOut(_Out):
    """Someone to call about a unit; phone and e-mail masked for roles that call no one."""

    name: str
    role: str
    phone: str | None
    email: str | None
    district_wide: bool = Field(description="a contact of the unit's district, not the unit's own")
    masked: bool = Field(description="phone and e-mail are masked for this token's role")


class AlertDetail(_Out):
    """An alert with its history, its notifications and the people to call about its unit."""

    alert: AlertOut
    history: list[AlertEventOut]
    notifications: list[NotificationOut]
    contacts: list[ContactOut] = Field(default_factory=list)


Grade = Literal["blue", "yellow", "orange", "red"]


class GradeReasonOut(_Out):
    """A factor that raised a unit's grade: its measure, its points and the sentence saying it."""

    model_config = ConfigDict(frozen=True, from_attributes=True, populate_by_name=True)

    factor: str
    value: float
    points: float
    en: str
    zh_cn: str = Field(alias="zh-CN")


class UnitOut(_Out):
    """A unit with device liveness and open-alert counts."""

    id: str
    name: str
    address: str
    district: str
    grid: str
    lat: float | None
    lon: float | None
    category: str
    devices: int
    online: int
    offline: int
    unknown: int
    open_alerts: int
    worst_severity: Severity | None
    grade: Grade | None = Field(description="the four-colour risk grade; null until first graded")
    grade_score: float | None = None
    grade_since: dt.datetime | None = Field(default=None, description="when it got this grade")
    grade_reasons: list[GradeReasonOut] = Field(default_factory=list)


class GradeChangeOut(_Out):
    """One change of a unit's grade, with the reasons it had then."""

    at: dt.datetime
    from_grade: Grade | None = Field(serialization_alias="from")
    to_grade: Grade = Field(serialization_alias="to")
    score: float
    reasons: list[GradeReasonOut]
    model_version: str
    trigger: str = Field(description="schedule, or request:<the token that asked>")


class GradeHistory(_Out):
    """A unit's current grade and its changes, newest first."""

    unit_id: str
    grade: Grade | None
    score: float | None
    since: dt.datetime | None
    reasons: list[GradeReasonOut]
    changes: list[GradeChangeOut]


class DeviceOut(_Out):
    """A device and its computed status (the device_liveness view)."""

    id: str
    unit_id: str
    unit_name: str
    type: str
    model: str
    location: str
    status: DeviceStatus
    last_seen: dt.datetime | None
    heartbeat_s: int
    metrics: list[str]

    @classmethod
    def of(cls, d: DeviceView) -> DeviceOut:
        """From the store's view, with the metrics its type reports."""
        metrics = [m.name for m in METRIC_BY_NAME.values() if DeviceType(d.type) in m.device_types]
        fields = {f: getattr(d, f) for f in cls.model_fields if f != "metrics"}
        return cls.model_validate({**fields, "metrics": metrics})


class UnitList(_Out):
    """GET /units."""

    items: list[UnitOut]


class DeviceList(_Out):
    """GET /devices."""

    items: list[DeviceOut]


class ThresholdLine(_Out):
    """A level a rule checks a metric against (after the device's attribute overrides)."""

    rule_id: str
    kind: Literal["above", "below", "low", "high"]
    value: float
    severity: Severity


class UnitDetail(_Out):
    """A unit, its devices, its open alerts and the thresholds of each device's metrics."""

    unit: UnitOut
    devices: list[DeviceOut]
    open_alerts: list[AlertOut]
    thresholds: dict[str, dict[str, list[ThresholdLine]]] = Field(
        description="device id → metric → levels"
    )
    contacts: list[ContactOut] = Field(default_factory=list)


class UnitEventOut(_Out):
    """One event a device of the unit reported (a UTD: alarms, supervisory, shield, start …)."""

    ts: dt.datetime
    device_id: str
    device_location: str
    seq: int
    kind: EventKind
    loop: int | None
    point: int | None
    text: str


class UnitEvents(_Out):
    """GET /units/{id}/events."""

    unit_id: str
    items: list[UnitEventOut]


class RuleOut(_Out):
    """A rule as the console names it."""

    id: str
    name: Message | None = Field(description="what operators call it (en, zh-CN); null: unnamed")
    severity: Severity
    kind: str
    metric: str | None
    event: str | None
    device_type: str | None


class RuleList(_Out):
    """GET /rules."""

    items: list[RuleOut]


class Point(_Out):
    """One bucket (a raw reading: all four values equal, count 1)."""

    t: dt.datetime
    min: float
    max: float
    avg: float
    last: float
    count: int


class Series(_Out):
    """The points of one device."""

    device_id: str
    points: list[Point]


class TelemetryOut(_Out):
    """GET /telemetry."""

    metric: str
    unit: str
    bucket: Bucket
    start: dt.datetime = Field(serialization_alias="from")
    end: dt.datetime = Field(serialization_alias="to")
    series: list[Series]
    truncated: bool = Field(description="true when `limit` cut the points short")


class AlertStatsOut(_Out):
    """Alerts opened in the period, for one unit or district."""

    key: str
    name: str
    alerts: int
    critical: int
    acknowledged: int
    mean_time_to_ack_s: float | None
    fire_alarms_verified: int = Field(description="verified either way (confirmed + false)")
    confirmed_fires: int = Field(description="verified as a real fire")
    false_alarms: int
    false_alarm_rate: float | None = Field(description="false alarms / verified fire alarms")


class StatsOut(_Out):
    """GET /stats/alerts."""

    group: Literal["unit", "district"]
    start: dt.datetime = Field(serialization_alias="from")
    end: dt.datetime = Field(serialization_alias="to")
    rows: list[AlertStatsOut]


class Me(_Out):
    """The caller: token name, role, permissions and unit scope (null: all units)."""

    name: str
    role: str
    permissions: list[str]
    units: list[str] | None


class StreamEvent(_Out):
    """The data of an SSE `alert` event; its SSE id is stream_id."""

    stream_id: int
    event_id: int
    kind: str
    actor: str
    at: dt.datetime
    comment: str
    alert: AlertOut


class Health(_Out):
    """/healthz (and the summary part of /readyz)."""

    status: Literal["ok", "ready", "not_ready"]
    checks: dict[str, str] = Field(default_factory=dict)


class EngineCheck(_Out):
    """One engine process as its last health report shows it."""

    client_id: str
    host: str
    pid: int
    status: str = Field(description="ok, or what is wrong (stale, broker disconnected, …)")
    fresh: bool = Field(description="the report is recent enough to be believed")
    updated_s_ago: float
    broker_connected: bool
    ingest_alive: bool
    outbox_alive: bool
    ingest_lag_s: float
    committed_messages: int
    started_at: dt.datetime
    last_batch_at: dt.datetime | None


class OutboxCheck(_Out):
    """Notifications due now and how long the oldest has waited."""

    due: int
    oldest_due_s: float


class ChannelAlertOut(_Out):
    """A notification channel that has kept failing: the control room is told through others."""

    subject: str = Field(description="sms, email, webhook:<name> or <robot kind>:<name>")
    failing_since: dt.datetime
    waiting: int
    last_error: str


class Readiness(Health):
    """/readyz: each component ok or why not; engines and outbox in detail when readable."""

    engines: list[EngineCheck] = Field(default_factory=list)
    outbox: OutboxCheck | None = None
    channel_alerts: list[ChannelAlertOut] = Field(
        default_factory=list, description="/status only: failing notification channels"
    )


class ErrorDetail(_Out):
    """One invalid parameter."""

    field: str
    message: str


class Error(_Out):
    """Every 4xx/5xx answer."""

    error: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


NotificationState = Literal[
    "pending", "sending", "sent", "delivered", "failed", "given_up", "cancelled"
]
_FAILED_STATES: tuple[NotificationState, ...] = ("failed", "given_up")


class NotificationQuery(_Query):
    """Filters of GET /notifications."""

    state: Annotated[list[NotificationState], BeforeValidator(_comma_list)] = Field(
        default_factory=lambda: list(_FAILED_STATES), description="comma-separated"
    )
    since: AwareDatetime | None = Field(default=None, description="queued at or after")
    limit: int = Field(default=100, ge=1, le=1000)


class OutboxRowOut(BaseModel):
    """One notification (receiver masked without contacts:read)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    created_at: dt.datetime
    alert_id: int | None
    severity: str | None
    rule_id: str | None
    channel: str
    receiver: str
    kind: str
    state: str
    attempts: int
    last_error: str | None
    sent_at: dt.datetime | None
    retried_by: str | None
    retried_at: dt.datetime | None


class NotificationList(BaseModel):
    """GET /notifications."""

    model_config = ConfigDict(frozen=True)

    items: list[OutboxRowOut]


class RetryBody(_Body):
    """Body of POST /notifications/retry: ids, or every given-up one (since a time)."""

    ids: list[int] = Field(default_factory=list, max_length=1000)
    given_up: bool = False
    since: AwareDatetime | None = None

    @model_validator(mode="after")
    def _something(self) -> RetryBody:
        if not self.ids and not self.given_up:
            raise ValueError("name notification ids, or set given_up")
        return self


class RetryOut(BaseModel):
    """What POST /notifications/retry queued again."""

    model_config = ConfigDict(frozen=True)

    queued: list[int]
    not_queued: list[int] = Field(description="ids named that were not given up or cancelled")


class ReceiptQuery(BaseModel):
    """What a provider's receipt URL carries: our key (Twilio), the push's secret (Aliyun);
    anything else the operator put in the URL is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    idempotency_key: str | None = None
    token: str | None = None


class ReceiptsOut(BaseModel):
    """How many receipts were kept for the outbox worker to apply."""

    model_config = ConfigDict(frozen=True)
    recorded: int
