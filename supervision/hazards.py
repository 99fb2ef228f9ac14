"""The hazard closed loop, as plain rules: the policy file, the states and the steps between
them, deadlines, and what the parties are told. No connection, no clock (now is passed in).

found → notified (督促: the unit's people are told) → rectifying (跟踪) → submitted (rectified,
with evidence) → reviewed (an inspector or supervisor checked it; a failed review sends it
back to rectifying) → closed (销案). A hazard not closed by its deadline is overdue: escalated
once to the district's supervisors, and counted in the unit's risk grade.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from store.hazards import LongOpenRow
from supervision.yaml_file import load_yaml_model

State = Literal["found", "notified", "rectifying", "submitted", "reviewed", "closed"]
Action = Literal["notify", "rectify", "submit", "review", "reject", "close"]
Severity = Literal["major", "general"]
Category = Literal[
    "blocked_exit", "fire_equipment", "electrical", "fire_water", "alarm_system", "storage", "other"
]
STATES: tuple[State, ...] = ("found", "notified", "rectifying", "submitted", "reviewed", "closed")

# Each step: the states it may be taken from, the state it leads to.
STEPS: dict[Action, tuple[frozenset[State], State]] = {
    "notify": (frozenset({"found"}), "notified"),
    "rectify": (frozenset({"found", "notified"}), "rectifying"),
    "submit": (frozenset({"notified", "rectifying"}), "submitted"),
    "review": (frozenset({"submitted"}), "reviewed"),
    "reject": (frozenset({"submitted"}), "rectifying"),
    "close": (frozenset({"reviewed"}), "closed"),
}
# Steps that judge the rectification: a supervisor's or inspector's (hazards:review).
REVIEW_STEPS: frozenset[Action] = frozenset({"review", "reject", "close"})

SEVERITY_ZH = {"major": "重大隐患", "general": "一般隐患"}
CATEGORY_WORDS: dict[str, tuple[str, str]] = {
    "blocked_exit": ("blocked exit or escape route", "疏散通道/安全出口堵塞"),
    "fire_equipment": ("fire equipment missing or broken", "消防设施器材缺失损坏"),
    "electrical": ("electrical hazard", "电气火灾隐患"),
    "fire_water": ("fire water supply", "消防供水"),
    "alarm_system": ("fire alarm system", "火灾自动报警系统"),
    "storage": ("flammable storage", "易燃物品违规存放"),
    "other": ("other", "其他"),
}


class HazardError(ValueError):
    """A step that does not apply to the hazard as it is; the message says why."""


def next_state(state: str, action: Action) -> State:
    """The state the step leads to from `state`, or HazardError saying which steps apply."""
    sources, target = STEPS[action]
    if state not in sources:
        allowed = [a for a, (src, _) in STEPS.items() if state in src]
        raise HazardError(
            f"a {state} hazard cannot be {action}ed here; "
            + (f"it can be: {', '.join(allowed)}" if allowed else "it is closed")
        )
    return target


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FromData(_Strict):
    """Alerts of these rules open this long make a hazard of their device."""

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    rules: list[str] = Field(min_length=1)
    open_hours: float = Field(gt=0, le=24 * 90)
    category: Category
    severity: Severity
    en: str
    zh_cn: str = Field(alias="zh-CN")


class FalseAlarms(_Strict):
    """More than per_day false alarms at a unit in 24 h make a hazard of the unit."""

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    per_day: int = Field(ge=1, le=1000)
    category: Category
    severity: Severity
    en: str
    zh_cn: str = Field(alias="zh-CN")


class HazardPolicy(_Strict):
    """The policy file (supervision/hazard_policy.yaml)."""

    version: str
    deadline_days: dict[Severity, float]
    remind_before_h: float = Field(default=24, ge=0, le=24 * 30)
    notify_roles: list[str]
    overdue_roles: list[str]
    channels: list[Literal["sms", "email"]]
    from_data: list[FromData] = Field(default_factory=list)
    false_alarms: FalseAlarms | None = None

    def deadline(self, severity: str, found_at: dt.datetime) -> dt.datetime:
        """When a hazard of this severity found then is to be rectified."""
        return found_at + dt.timedelta(days=self.deadline_days[severity])  # type: ignore[index]


class HazardPolicyError(ValueError):
    """The policy file is broken; the message names the file and the field."""


def load_policy(path: Path | None = None) -> HazardPolicy:
    """The hazard policy from `path`, or the shipped one; HazardPolicyError if it is broken."""
    policy = load_yaml_model(HazardPolicy, path, "hazard_policy.yaml", HazardPolicyError)
    where = str(path) if path is not None else "the shipped hazard_policy.yaml"
    missing = {"major", "general"} - set(policy.deadline_days)
    if missing:
        raise HazardPolicyError(f"{where}: deadline_days: give {', '.join(sorted(missing))}")
    return policy


@dataclass(frozen=True, slots=True)
class Finding:
    """A hazard the data found: where, what, and its key (one open hazard per key)."""

    rule_id: str
    dedup_key: str
    unit_id: str
    device_id: str | None
    category: str
    severity: str
    description: str


def findings(
    policy: HazardPolicy,
    long_open: Mapping[str, Sequence[LongOpenRow]],
    false_alarms: dict[str, int],
    rule_names: dict[str, str],
    now: dt.datetime,
) -> list[Finding]:
    """The hazards the data shows now: long-open alerts by from_data id, and units with too
    many false alarms in 24 h (their counts). Descriptions are in zh-CN then English."""
    out: list[Finding] = []
    for rule in policy.from_data:
        for a in long_open.get(rule.id, []):
            hours = f"{(now - a.opened_at).total_seconds() / 3600:.0f}"
            name = rule_names.get(a.rule_id, a.rule_id)
            words = (
                rule.zh_cn.format(rule=name, hours=hours)
                + " / "
                + rule.en.format(rule=a.rule_id, hours=hours)
            )
            out.append(
                Finding(
                    rule.id,
                    f"{rule.id}:{a.device_id}",
                    a.unit_id,
                    a.device_id,
                    rule.category,
                    rule.severity,
                    words,
                )
            )
    fa = policy.false_alarms
    if fa is not None:
        for unit_id, count in sorted(false_alarms.items()):
            if count > fa.per_day:
                words = fa.zh_cn.format(count=count) + " / " + fa.en.format(count=count)
                out.append(
                    Finding(
                        fa.id, f"{fa.id}:{unit_id}", unit_id, None, fa.category, fa.severity, words
                    )
                )
    return out


def _local(at: dt.datetime, tz: str) -> str:
    return at.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


def notice_text(
    kind: Literal["notified", "reminder", "overdue"],
    *,
    hazard_id: int,
    unit_name: str,
    description: str,
    severity: str,
    deadline: dt.datetime,
    responsible: str,
    locale: str,
    timezone: str,
) -> tuple[str, str]:
    """(title, text) of the message telling a party of a hazard to rectify, or overdue."""
    when = _local(deadline, timezone)
    if locale == "en":
        sev = "major hazard" if severity == "major" else "hazard"
        if kind == "notified":
            title = f"Fire hazard to rectify at {unit_name}"
            text = f"{title} (#{hazard_id}, {sev}): {description}. Rectify by {when}."
        elif kind == "reminder":
            title = f"Fire hazard due soon at {unit_name}"
            text = f"{title} (#{hazard_id}, {sev}): {description}. The deadline is {when}."
        else:
            title = f"Fire hazard overdue at {unit_name}"
            text = (
                f"{title} (#{hazard_id}, {sev}): {description}. Deadline was {when}; "
                f"responsible: {responsible or 'not named'}."
            )
        return title, text
    sev = SEVERITY_ZH.get(severity, severity)
    if kind == "notified":
        title = f"【消防隐患督促】{unit_name}"
        text = f"{title}（#{hazard_id}，{sev}）：{description}。请于 {when} 前完成整改。"
    elif kind == "reminder":
        title = f"【隐患整改提醒】{unit_name}"
        text = f"{title}（#{hazard_id}，{sev}）：{description}。整改期限 {when}，请按期完成。"
    else:
        title = f"【隐患逾期】{unit_name}"
        text = (
            f"{title}（#{hazard_id}，{sev}）：{description}。整改期限 {when} 已过，"
            f"负责人：{responsible or '未指定'}。"
        )
    return title, text
