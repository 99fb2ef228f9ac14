"""Grade units from facts about their alerts: plain Python over plain data, no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from supervision.model import GRADE_ORDER, GRADE_ZH, Factor, Grade, RiskModel


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What one unit's alerts of one rule (and one verification outcome) add up to.

    verification: "confirmed_fire", "false_alarm", "unverified" (a fire alarm not closed as
    either yet) or None (an alert that is not verified at all).
    """

    rule_id: str
    verification: str | None
    opened: int  # opened inside the window
    open_now: int  # firing or acknowledged at the moment of grading
    hours: float  # hours the alerts lasted inside the window (until cleared, or now)


@dataclass(frozen=True, slots=True)
class UnitFacts:
    """One unit as the grader sees it."""

    unit_id: str
    category: str
    alerts: tuple[AlertFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class Reason:
    """One factor that gave points, with its measure and its sentence in both languages."""

    factor: str
    value: float
    points: float
    en: str
    zh_cn: str


@dataclass(frozen=True, slots=True)
class UnitGrade:
    """A unit's grade, its score and the reasons, biggest first."""

    unit_id: str
    grade: Grade
    score: float
    category_weight: float
    reasons: tuple[Reason, ...]

    def explain(self, lang: str = "en") -> str:
        """The reasons as one sentence: '3 false alarms in 7 days, …' (or 'no risk factor')."""
        if lang == "zh-CN":
            return "，".join(r.zh_cn for r in self.reasons) or "无风险因素"
        return ", ".join(r.en for r in self.reasons) or "no risk factor"

    def summary(self, lang: str = "en") -> str:
        """'orange: 3 false alarms in 7 days, …' (zh-CN: '橙：7天内误报3次，…')."""
        if lang == "zh-CN":
            return f"{GRADE_ZH[self.grade]}：{self.explain(lang)}"
        return f"{self.grade.value}: {self.explain(lang)}"


def _measure(factor: Factor, facts: Iterable[AlertFacts]) -> float:
    total = 0.0
    for a in facts:
        if not factor.matches(a.rule_id):
            continue
        if factor.verification is not None and a.verification != factor.verification:
            continue
        if factor.measure == "count":
            total += a.opened
        elif factor.measure == "open_now":
            total += a.open_now
        else:
            total += a.hours
    return total


def _say(template: str, value: float, days: int) -> str:
    return template.format(n=round(value), h=round(value, 1), days=days)


def grade_for(score: float, thresholds: Mapping[Grade, float]) -> Grade:
    """The highest grade whose threshold the score reaches."""
    reached = Grade.BLUE
    for g in GRADE_ORDER:
        if score >= thresholds[g]:
            reached = g
    return reached


def grade_unit(model: RiskModel, unit: UnitFacts) -> UnitGrade:
    """Score one unit's facts with the model and explain the score."""
    reasons: list[Reason] = []
    raw = 0.0
    for f in model.factors:
        value = _measure(f, unit.alerts)
        points = min(f.weight * value, f.max_points)
        if round(points, 1) <= 0:
            continue  # minutes of an offline device: nothing worth saying
        raw += points
        reasons.append(
            Reason(
                factor=f.id,
                value=round(value, 2),
                points=round(points, 2),
                en=_say(f.reason.english(round(value)), value, model.window_days),
                zh_cn=_say(f.reason.zh_cn, value, model.window_days),
            )
        )
    weight = model.category_weight(unit.category)
    score = round(raw * weight, 2)
    reasons.sort(key=lambda r: -r.points)
    return UnitGrade(unit.unit_id, grade_for(score, model.grades), score, weight, tuple(reasons))


def grade_units(model: RiskModel, units: Sequence[UnitFacts]) -> list[UnitGrade]:
    """Grade every unit (a unit without alerts is blue, with no reasons)."""
    return [grade_unit(model, u) for u in units]
