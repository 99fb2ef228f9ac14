"""The four-colour grade from facts: the shipped model's arithmetic, caps, categories, reasons."""

from __future__ import annotations

import pytest

from supervision.grade import AlertFacts, UnitFacts, grade_for, grade_unit
from supervision.model import Grade, load_model

MODEL = load_model()


def facts(*alerts: AlertFacts, category: str = "small_venue") -> UnitFacts:
    """One unit with these alert figures."""
    return UnitFacts("u1", category, alerts)


def fa(verification: str, opened: int = 1, open_now: int = 0) -> AlertFacts:
    """Fire alarms with one verification outcome."""
    return AlertFacts("fire_alarm", verification, opened, open_now, 0.1 * opened)


@pytest.mark.parametrize(
    ("unit", "grade", "score"),
    [
        (facts(), Grade.BLUE, 0),
        # 3 false alarms in a week: 12 points, yellow; 8 of them: 32, orange; 40 are capped at 40.
        (facts(fa("false_alarm", 3)), Grade.YELLOW, 12),
        (facts(fa("false_alarm", 8)), Grade.ORANGE, 32),
        (facts(fa("false_alarm", 40)), Grade.ORANGE, 40),
        # One confirmed fire: orange in a shop, red in a hospital (40 × 1.5 = 60).
        (facts(fa("confirmed_fire")), Grade.ORANGE, 40),
        (facts(fa("confirmed_fire"), category="hospital"), Grade.RED, 60),
        # A fault open now (8) and open 10 h (5): 13, yellow.
        (facts(AlertFacts("panel_fault", None, 1, 1, 10.0)), Grade.YELLOW, 13),
        # Electrical alerts match by pattern: two hot cables and an arc, 15 points.
        (
            facts(
                AlertFacts("cable_temp_high_2", None, 1, 0, 1.0),
                AlertFacts("cable_temp_high_4", None, 1, 0, 1.0),
                AlertFacts("arc_fault", None, 1, 0, 0.0),
            ),
            Grade.YELLOW,
            15,
        ),
        # A tank low for 6 h (6) and 3 false alarms (12): 18, yellow; in a school 23.4.
        (
            facts(AlertFacts("tank_level_low", None, 1, 0, 6.0), fa("false_alarm", 3)),
            Grade.YELLOW,
            18,
        ),
        (
            facts(
                AlertFacts("tank_level_low", None, 1, 0, 6.0),
                fa("false_alarm", 3),
                category="school",
            ),
            Grade.YELLOW,
            23.4,
        ),
        # An unknown category weighs 1.
        (facts(fa("false_alarm", 3), category="moon_base"), Grade.YELLOW, 12),
        # Rules the model does not name give nothing (battery low).
        (facts(AlertFacts("battery_low_utd", None, 5, 5, 100.0)), Grade.BLUE, 0),
    ],
)
def test_shipped_model_scores(unit: UnitFacts, grade: Grade, score: float) -> None:
    """The shipped model grades these units as its comments say."""
    g = grade_unit(MODEL, unit)
    assert g.grade == grade and g.score == pytest.approx(score)


def test_verification_outcomes_count_separately() -> None:
    """A fire alarm weighs as unverified until closed; then as a false alarm or a confirmed fire."""
    unverified = grade_unit(MODEL, facts(fa("unverified")))
    false_alarm = grade_unit(MODEL, facts(fa("false_alarm")))
    assert [r.factor for r in unverified.reasons] == ["unverified_fire_alarms"]
    assert [r.factor for r in false_alarm.reasons] == ["false_alarms"]
    assert unverified.score == 15 and false_alarm.score == 4


def test_reasons_biggest_first_in_both_languages() -> None:
    """Reasons are sorted by points and say the measure in English and Chinese."""
    g = grade_unit(
        MODEL,
        facts(fa("false_alarm", 3), AlertFacts("tank_level_low", None, 1, 0, 6.0)),
    )
    assert g.explain() == "3 false alarms in 7 days, water supply low for 6.0 h in 7 days"
    assert g.explain("zh-CN") == "7天内误报3次，7天内消防水源不足累计6.0小时"
    assert g.summary() == "yellow: " + g.explain()
    assert g.summary("zh-CN").startswith("黄：")
    assert [r.points for r in g.reasons] == [12, 6]


def test_singular_wording() -> None:
    """One of a thing is said in the singular."""
    g = grade_unit(MODEL, facts(fa("false_alarm", 1)))
    assert g.explain() == "a false alarm in 7 days"


def test_negligible_points_are_not_reasons() -> None:
    """A device offline for a few minutes gives no reason and no points."""
    g = grade_unit(MODEL, facts(AlertFacts("device_offline", None, 1, 1, 0.1)))
    assert (g.grade, g.score, g.reasons) == (Grade.BLUE, 0, ())


@pytest.mark.parametrize(
    ("score", "grade"),
    [(0, Grade.BLUE), (9.99, Grade.BLUE), (10, Grade.YELLOW), (25, Grade.ORANGE), (60, Grade.RED)],
)
def test_thresholds_are_inclusive(score: float, grade: Grade) -> None:
    """A score equal to a grade's threshold has that grade."""
    assert grade_for(score, MODEL.grades) == grade
