"""Message wording in zh-CN and en: every text an operator or a contact reads is in TEMPLATES."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from alerts.notify.sms import fit_sms

Event = Literal["firing", "resolved", "reminder", "escalation", "group"]
EVENTS: tuple[str, ...] = ("firing", "resolved", "reminder", "escalation", "group")
SEVERITY_ORDER: tuple[str, ...] = ("critical", "major", "warning", "info")
ROBOT_CHANNELS = frozenset({"wecom", "dingtalk", "feishu"})
# Robots show at most this many alerts of a storm; their messages have a size limit.
ROBOT_MAX_ITEMS = 20
EMAIL_MAX_ITEMS = 200

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "severity.critical": "critical",
        "severity.major": "major",
        "severity.warning": "warning",
        "severity.info": "info",
        "title.firing": "[{severity}] {summary}",
        "title.resolved": "[resolved] {summary}",
        "title.reminder": "[{severity}, still open] {summary}",
        "title.escalation": "[{severity}, escalated] {summary}",
        "title.group": "{count} alerts at {unit}",
        "lead.firing": "A new alert is firing.",
        "lead.resolved": "The condition has cleared.",
        "lead.reminder": "This alert is still open and nobody has handled it yet.",
        "lead.escalation": "Nobody acknowledged this alert in time; it is escalated to you.",
        "lead.group": "{count} alerts at {unit}, most severe first:",
        "item": "[{severity}] {summary} ({time})",
        "more": "… and {n} more",
        "sms.single": "{title} {time}",
        "sms.group": "{title}: {items}",
        "sms.item": "[{severity}] {summary}",
        "sms.sep": "; ",
        "units": "{n} units",
        "fallback": "{rule} on {device}",
        "label.severity": "Severity",
        "label.unit": "Unit",
        "label.device": "Device",
        "label.rule": "Rule",
        "label.value": "Value",
        "label.threshold": "threshold",
        "label.time": "Time",
        "label.count": "Occurrences",
        "label.alert": "Alert ID",
        "footer": "-- \nfiresentry fire-safety monitoring",
    },
    "zh-CN": {
        "severity.critical": "严重",
        "severity.major": "重要",
        "severity.warning": "警告",
        "severity.info": "提示",
        "title.firing": "【{severity}】{summary}",
        "title.resolved": "【已恢复】{summary}",
        "title.reminder": "【{severity}·未处理】{summary}",
        "title.escalation": "【{severity}·已升级】{summary}",
        "title.group": "{unit}发生{count}条告警",
        "lead.firing": "发生新告警。",
        "lead.resolved": "告警条件已解除。",
        "lead.reminder": "该告警仍未处理，请尽快处理。",
        "lead.escalation": "该告警未在规定时间内确认，已升级通知您。",
        "lead.group": "{unit}共有{count}条告警，按严重程度排列：",
        "item": "【{severity}】{summary}（{time}）",
        "more": "……另有{n}条",
        "sms.single": "{title} {time}",
        "sms.group": "{title}：{items}",
        "sms.item": "【{severity}】{summary}",
        "sms.sep": "；",
        "units": "{n}个单位",
        "fallback": "{device}：{rule}",
        "label.severity": "级别",
        "label.unit": "单位",
        "label.device": "设备",
        "label.rule": "规则",
        "label.value": "数值",
        "label.threshold": "阈值",
        "label.time": "时间",
        "label.count": "次数",
        "label.alert": "告警编号",
        "footer": "-- \nfiresentry 消防安全监测",
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

    def time(self, a: Mapping[str, Any], short: bool = False) -> str:
        at = _when(a)
        if at is None:
            return str(a.get("at") or "")
        fmt = "%m-%d %H:%M %Z" if short else "%Y-%m-%d %H:%M:%S %Z"
        return at.astimezone(self.tz).strftime(fmt)

    def title(self, event: str, a: Mapping[str, Any]) -> str:
        return self(f"title.{event}", severity=self.severity(a), summary=self.summary(a))

    def item(self, a: Mapping[str, Any]) -> str:
        short = self.channel != "email"
        return self(
            "item", severity=self.severity(a), summary=self.summary(a), time=self.time(a, short)
        )

    def details(self, a: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Label and value pairs describing one alert in full."""
        device = self.device(a)
        if a.get("device_type"):
            device += f" ({a['device_type']})"
        unit = self.unit(a)
        if a.get("unit_name") and a.get("unit_id"):
            unit += f" ({a['unit_id']})"
        rows = [
            (self("label.severity"), self.severity(a)),
            (self("label.unit"), unit),
            (self("label.device"), device),
            (self("label.rule"), str(a.get("rule_id") or "")),
        ]
        if a.get("value") is not None:
            value = f"{a.get('metric') or ''} {_num(a['value'])}".strip()
            if a.get("threshold") is not None:
                value += f" ({self('label.threshold')} {_num(a['threshold'])})"
            rows.append((self("label.value"), value))
        rows.append((self("label.time"), self.time(a)))
        if a.get("count"):
            rows.append((self("label.count"), str(a["count"])))
        rows.append((self("label.alert"), str(a.get("id"))))
        return rows


def _group_unit(r: _Renderer, alerts: Sequence[Mapping[str, Any]]) -> str:
    units = list(dict.fromkeys(r.unit(a) for a in alerts))
    return units[0] if len(units) == 1 else r("units", n=len(units))


def _sms(r: _Renderer, event: str, alerts: list[Mapping[str, Any]]) -> Rendered:
    if event == "group":
        title = r("title.group", count=len(alerts), unit=_group_unit(r, alerts))
        items = r("sms.sep").join(
            r("sms.item", severity=r.severity(a), summary=r.summary(a)) for a in alerts
        )
        text = r("sms.group", title=title, items=items)
    else:
        title = r.title(event, alerts[0])
        text = r("sms.single", title=title, time=r.time(alerts[0], short=True))
        if len(alerts) > 1:
            text += " " + r("more", n=len(alerts) - 1)
    return Rendered(title, fit_sms(text, 2))


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
    lines = [r(f"lead.{event}")]
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
        parts = [r(f"lead.{event}"), *(block(a) for a in alerts)]
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
