"""Message wording in zh-CN and en: every text an operator or a contact reads is in TEMPLATES."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from alerts.notify.sms import SmsPart, fit_sms, fit_sms_parts
from alerts.planner import point_words
from devices.catalog import METRIC_BY_NAME

Event = Literal["firing", "resolved", "reminder", "escalation", "group"]
EVENTS: tuple[str, ...] = ("firing", "resolved", "reminder", "escalation", "group")
SEVERITY_ORDER: tuple[str, ...] = ("critical", "major", "warning", "info")
ROBOT_CHANNELS = frozenset({"wecom", "dingtalk", "feishu"})
# Robots show at most this many alerts of a storm; their messages have a size limit.
ROBOT_MAX_ITEMS = 20
EMAIL_MAX_ITEMS = 200

# The metrics as a message names them (never the raw id: "第1路线缆温度", not "temp_c_1").
_METRIC_WORDS: dict[str, tuple[str, str]] = {
    "battery_pct": ("Battery", "电池电量"),
    "rssi_dbm": ("Signal strength", "信号强度"),
    "residual_current_ma": ("Residual current", "剩余电流"),
    **{f"temp_c_{n}": (f"Cable temperature, channel {n}", f"第{n}路线缆温度") for n in range(1, 5)},
    **{f"voltage_v_{p}": (f"Phase {p.upper()} voltage", f"{p.upper()}相电压") for p in "abc"},
    **{f"current_a_{p}": (f"Phase {p.upper()} current", f"{p.upper()}相电流") for p in "abc"},
    "level_m": ("Tank level", "水位"),
    "pressure_mpa": ("Water main pressure", "管网压力"),
}
_TYPE_WORDS: dict[str, tuple[str, str]] = {
    "user_transmission_device": ("user transmission device", "用户信息传输装置"),
    "electrical_monitor": ("electrical fire monitor", "电气火灾监控探测器"),
    "water_level": ("fire tank level sensor", "消防水池液位传感器"),
    "water_pressure": ("water main pressure sensor", "管网压力传感器"),
}

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        # One vocabulary with the console (api/static/i18n.js).
        "severity.critical": "critical",
        "severity.major": "major",
        "severity.warning": "warning",
        "severity.info": "info",
        "title.firing": "[{severity}] {summary}",
        "title.spreading": "[FIRE, {nth} detector] {summary}",
        "title.resolved": "[back to normal] {summary}",
        "title.reminder": "[{severity}, still open] {summary}",
        "title.escalation": "[{severity}, escalated] {summary}",
        "title.group": "{count} alerts at {unit}",
        "lead.firing": "A new alert is firing.",
        "lead.spreading": "{n} detectors are alarming at this unit: the fire may be spreading.",
        "lead.resolved": "The condition has cleared: back to normal.",
        "lead.reminder": "This alert is still open and nobody has acknowledged it yet.",
        "lead.escalation": "Nobody acknowledged this alert in time; it is escalated to you.",
        "lead.group": "{count} alerts at {unit}, most severe first:",
        "item": "[{severity}] {summary} ({time})",
        "more": "… and {n} more",
        "sms.group": "{title}: {items}",
        "sms.group_at": "{title} ({address}): {items}",
        "sms.item": "[{severity}] {summary}",
        "sms.sep": "; ",
        "sms.unit": "Unit: {v}",
        "sms.address": "Address: {v}",
        "sms.location": "Location: {v}",
        "sms.point": "Point: {v}",
        "units": "{n} units",
        "fallback": "{rule} on {device}",
        "label.severity": "Severity",
        "label.unit": "Unit",
        "label.address": "Address",
        "label.device": "Device",
        "label.location": "Location",
        "label.point": "Point",
        "label.fire_alarms": "Detectors alarming",
        "label.rule": "Rule",
        "label.value": "Value",
        "label.threshold": "threshold",
        "label.time": "Time",
        "label.count": "Occurrences",
        "label.alert": "Alert ID",
        "footer": "-- \nfiresentry fire-safety monitoring",
        **{f"metric.{k}": en for k, (en, _) in _METRIC_WORDS.items()},
        **{f"type.{k}": en for k, (en, _) in _TYPE_WORDS.items()},
    },
    "zh-CN": {
        "severity.critical": "紧急",
        "severity.major": "重要",
        "severity.warning": "警告",
        "severity.info": "提示",
        "title.firing": "【{severity}】{summary}",
        "title.spreading": "【火警·第{n}个探测器】{summary}",
        # Never 已恢复 alone: a control room reads it as the panel's 复位.
        "title.resolved": "【已恢复正常】{summary}",
        "title.reminder": "【{severity}·未受理】{summary}",
        "title.escalation": "【{severity}·已升级】{summary}",
        "title.group": "{unit}发生{count}条告警",
        "lead.firing": "发生新告警。",
        "lead.spreading": "本单位已有{n}个探测器报警，火情可能正在蔓延。",
        "lead.resolved": "告警条件已消除，已恢复正常。",
        "lead.reminder": "该告警仍未受理，请尽快处理。",
        "lead.escalation": "该告警未在规定时间内受理，已升级通知您。",
        "lead.group": "{unit}共有{count}条告警，按严重程度排列：",
        "item": "【{severity}】{summary}（{time}）",
        "more": "……另有{n}条",
        "sms.group": "{title}：{items}",
        "sms.group_at": "{title}（{address}）：{items}",
        "sms.item": "【{severity}】{summary}",
        "sms.sep": "；",
        "sms.unit": "单位：{v}",
        "sms.address": "地址：{v}",
        "sms.location": "位置：{v}",
        "sms.point": "点位：{v}",
        "units": "{n}个单位",
        "fallback": "{device}：{rule}",
        "label.severity": "级别",
        "label.unit": "单位",
        "label.address": "地址",
        "label.device": "设备",
        "label.location": "设备位置",
        "label.point": "报警点位",
        "label.fire_alarms": "报警探测器数",
        "label.rule": "规则",
        "label.value": "数值",
        "label.threshold": "阈值",
        "label.time": "时间",
        "label.count": "次数",
        "label.alert": "告警编号",
        "footer": "-- \nfiresentry 消防安全监测",
        **{f"metric.{k}": zh for k, (_, zh) in _METRIC_WORDS.items()},
        **{f"type.{k}": zh for k, (_, zh) in _TYPE_WORDS.items()},
    },
}


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message ready for a channel: a title (subject, header) and a body."""

    title: str
    text: str


def _locale(locale: str) -> str:
    return "zh-CN" if locale.lower().startswith("zh") else "en"


def _when(alert: Mapping[str, Any]) -> dt.datetime | None:
    try:
        at = dt.datetime.fromisoformat(str(alert.get("at")))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def severity_rank(severity: str) -> int:
    """0 for critical up to 3 for info; an unknown severity ranks after every known one."""
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def worst_first(alerts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Alerts ordered by severity (critical > major > warning > info), then newest first."""
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)

    def key(a: Mapping[str, Any]) -> tuple[int, float]:
        return severity_rank(str(a.get("severity"))), -(_when(a) or oldest).timestamp()

    return sorted(alerts, key=key)


def _width(text: str) -> int:
    """Columns text takes in a monospaced font: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th … 11th, 12th, 13th … 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _spreading(a: Mapping[str, Any]) -> int | None:
    """How many detectors of the unit alarm with this fire alarm, when it is 2 or more."""
    n = a.get("unit_fire_alarms")
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 2 else None


class _Renderer:
    """Fills TEMPLATES for one locale, time zone and channel."""

    def __init__(self, locale: str, channel: str, tz: dt.tzinfo) -> None:
        self.t = TEMPLATES[_locale(locale)]
        self.locale = _locale(locale)
        self.channel = channel
        self.tz = tz

    def __call__(self, key: str, **values: Any) -> str:
        return self.t[key].format(**values)

    def severity(self, a: Mapping[str, Any]) -> str:
        sev = str(a.get("severity"))
        return self.t.get(f"severity.{sev}", sev)

    def summary(self, a: Mapping[str, Any]) -> str:
        messages = a.get("message") or {}
        other = "en" if self.locale == "zh-CN" else "zh-CN"
        text = messages.get(self.locale) or messages.get(other)
        return str(text) if text else self("fallback", rule=a.get("rule_id"), device=self.device(a))

    def device(self, a: Mapping[str, Any]) -> str:
        return str(a.get("device_id") or "?")

    def unit(self, a: Mapping[str, Any]) -> str:
        return str(a.get("unit_name") or a.get("unit_id") or "?")

    def point(self, a: Mapping[str, Any]) -> str:
        """The alarming detector as rule messages name it (the panel's text, else loop/point)."""
        return point_words(
            a.get("point"), a.get("loop"), str(a.get("point_text") or ""), self.locale
        )

    def point_full(self, a: Mapping[str, Any]) -> str:
        """The detector with both the panel's text and its loop and point, when there are both."""
        text = str(a.get("point_text") or "")
        numbers = point_words(a.get("point"), a.get("loop"), "", self.locale)
        if text and numbers:
            return f"{text}（{numbers}）" if self.locale == "zh-CN" else f"{text} ({numbers})"
        return text or numbers

    def metric(self, a: Mapping[str, Any]) -> str:
        metric = str(a.get("metric") or "")
        return self.t.get(f"metric.{metric}", metric)

    def time(self, a: Mapping[str, Any], short: bool = False) -> str:
        at = _when(a)
        if at is None:
            return str(a.get("at") or "")
        fmt = "%m-%d %H:%M %Z" if short else "%Y-%m-%d %H:%M:%S %Z"
        return at.astimezone(self.tz).strftime(fmt)

    def title(self, event: str, a: Mapping[str, Any]) -> str:
        n = _spreading(a)
        if event == "firing" and n is not None:
            return self("title.spreading", n=n, nth=_ordinal(n), summary=self.summary(a))
        return self(f"title.{event}", severity=self.severity(a), summary=self.summary(a))

    def lead(self, event: str, a: Mapping[str, Any]) -> list[str]:
        n = _spreading(a)
        lines = [self(f"lead.{event}")]
        if event == "firing" and n is not None:
            lines.append(self("lead.spreading", n=n))
        return lines

    def item(self, a: Mapping[str, Any]) -> str:
        short = self.channel != "email"
        return self(
            "item", severity=self.severity(a), summary=self.summary(a), time=self.time(a, short)
        )

    def value(self, a: Mapping[str, Any]) -> str:
        """The reading with its unit and the threshold, the metric named in words."""
        spec = METRIC_BY_NAME.get(str(a.get("metric") or ""))
        unit = f" {spec.unit}" if spec is not None else ""
        value = f"{self.metric(a)} {_num(a['value'])}{unit}".strip()
        if a.get("threshold") is not None:
            threshold = f"{self('label.threshold')} {_num(a['threshold'])}{unit}"
            value += f"（{threshold}）" if self.locale == "zh-CN" else f" ({threshold})"
        return value

    def details(self, a: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Label and value pairs describing one alert in full."""
        device = self.device(a)
        if a.get("device_type"):
            kind = str(a["device_type"])
            device += f" ({self.t.get(f'type.{kind}', kind)})"
        unit = self.unit(a)
        if a.get("unit_name") and a.get("unit_id"):
            unit += f" ({a['unit_id']})"
        rows = [(self("label.severity"), self.severity(a)), (self("label.unit"), unit)]
        if a.get("unit_address"):
            rows.append((self("label.address"), str(a["unit_address"])))
        rows.append((self("label.device"), device))
        if a.get("device_location"):
            rows.append((self("label.location"), str(a["device_location"])))
        if self.point_full(a):
            rows.append((self("label.point"), self.point_full(a)))
        n = _spreading(a)
        if n is not None:
            rows.append((self("label.fire_alarms"), str(n)))
        rows.append((self("label.rule"), str(a.get("rule_id") or "")))
        if a.get("value") is not None:
            rows.append((self("label.value"), self.value(a)))
        rows.append((self("label.time"), self.time(a)))
        if a.get("count"):
            rows.append((self("label.count"), str(a["count"])))
        rows.append((self("label.alert"), str(a.get("id"))))
        return rows


def _group_unit(r: _Renderer, alerts: Sequence[Mapping[str, Any]]) -> str:
    units = list(dict.fromkeys(r.unit(a) for a in alerts))
    return units[0] if len(units) == 1 else r("units", n=len(units))


def _sms_single(r: _Renderer, event: str, a: Mapping[str, Any], more: int) -> str:
    """One alert in two segments: title (with 火警 and the unit) first and never cut short of
    the unit; then the detector, the address, the time and the device's location, cut in the
    reverse order when the room runs out."""
    title = r.title(event, a)
    unit = r.unit(a)
    if unit in title:
        keep = title.index(unit) + len(unit)
    else:
        summary = r.summary(a)
        keep = len(title) - len(summary) + min(len(summary), 6) if title.endswith(summary) else 0
    parts = [SmsPart(title, 0, keep)]

    def add(key: str, value: str, rank: int) -> None:
        if value and value not in title:
            label = r(key, v="")
            parts.append(SmsPart(r(key, v=value), rank, len(label) + min(len(value), 4)))

    add("sms.unit", unit if unit != "?" else "", 0)
    point = r.point(a)
    add("sms.point", point, 1)
    add("sms.address", str(a.get("unit_address") or ""), 2)
    location = str(a.get("device_location") or "")
    # A panel's own place matters less than its detector's; a monitor's place is all there is.
    add("sms.location", location if location != point else "", 4 if point else 1)
    parts.append(SmsPart(r.time(a, short=True), 3))
    if more:
        parts.append(SmsPart(r("more", n=more), 1))
    return fit_sms_parts(parts, r("sms.sep"))


def _sms(r: _Renderer, event: str, alerts: list[Mapping[str, Any]]) -> Rendered:
    if event == "group":
        title = r("title.group", count=len(alerts), unit=_group_unit(r, alerts))
        items = r("sms.sep").join(
            r("sms.item", severity=r.severity(a), summary=r.summary(a)) for a in alerts
        )
        # A storm at one unit says where the unit is; the items are cut first, never that.
        addresses = {str(a.get("unit_address") or "") for a in alerts}
        address = addresses.pop() if len(addresses) == 1 else ""
        if address:
            text = r("sms.group_at", title=title, address=address, items=items)
        else:
            text = r("sms.group", title=title, items=items)
        return Rendered(title, fit_sms(text, 2))
    title = r.title(event, alerts[0])
    return Rendered(title, _sms_single(r, event, alerts[0], len(alerts) - 1))


def _robot(r: _Renderer, event: str, alerts: list[Mapping[str, Any]]) -> Rendered:
    # DingTalk's markdown joins single newlines; a blank line breaks everywhere.
    nl = "\n\n" if r.channel == "dingtalk" else "\n"
    if event == "group":
        unit = _group_unit(r, alerts)
        title = r("title.group", count=len(alerts), unit=unit)
        lines = [r("lead.group", count=len(alerts), unit=unit)]
        lines += [f"- {r.item(a)}" for a in alerts[:ROBOT_MAX_ITEMS]]
        if len(alerts) > ROBOT_MAX_ITEMS:
            lines.append(r("more", n=len(alerts) - ROBOT_MAX_ITEMS))
        return Rendered(title, nl.join(lines))
    a = alerts[0]
    lines = r.lead(event, a)
    lines += [f"**{label}**: {value}" for label, value in r.details(a)]
    if len(alerts) > 1:
        lines.append(r("more", n=len(alerts) - 1))
    return Rendered(r.title(event, a), nl.join(lines))


def _email(r: _Renderer, event: str, alerts: list[Mapping[str, Any]]) -> Rendered:
    def block(a: Mapping[str, Any]) -> str:
        rows = r.details(a)
        width = max(_width(label) for label, _ in rows) + 2
        return "\n".join(
            f"{label}:{' ' * (width - _width(label) - 1)}{value}" for label, value in rows
        )

    if event == "group":
        unit = _group_unit(r, alerts)
        title = r("title.group", count=len(alerts), unit=unit)
        parts = [r("lead.group", count=len(alerts), unit=unit)]
        for a in alerts[:EMAIL_MAX_ITEMS]:
            parts.append(r.item(a) + "\n" + block(a))
        if len(alerts) > EMAIL_MAX_ITEMS:
            parts.append(r("more", n=len(alerts) - EMAIL_MAX_ITEMS))
    else:
        title = r.title(event, alerts[0])
        parts = [*r.lead(event, alerts[0]), *(block(a) for a in alerts)]
    parts.append(r("footer"))
    return Rendered(title, "\n\n".join(parts))


def render(
    event: str,
    alerts: Sequence[Mapping[str, Any]],
    locale: str,
    channel: str,
    *,
    tz: dt.tzinfo = dt.UTC,
) -> Rendered:
    """Render one message for a channel: SMS fits two segments, robots get markdown, email is full.

    alerts are shaped like the "alert" object of a notice (alerts.shape.AlertObject);
    a group lists them worst first; other events describe the first alert.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; expected one of {', '.join(EVENTS)}")
    if not alerts:
        raise ValueError("render needs at least one alert")
    r = _Renderer(locale, channel, tz)
    ordered = worst_first(alerts) if event == "group" else list(alerts)
    if channel == "sms":
        return _sms(r, event, ordered)
    if channel in ROBOT_CHANNELS:
        return _robot(r, event, ordered)
    return _email(r, event, ordered)
