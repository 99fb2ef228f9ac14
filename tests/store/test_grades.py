"""Grades in the database: the facts the grader reads, one-statement writes, changes recorded."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from devices.catalog import DeviceType
from firesentry.embedded import Endpoints
from store import grades as store
from store import registry as reg
from supervision.grader import facts_of, grade_all, grade_now
from supervision.model import load_model

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
WEEK = dt.timedelta(days=7)


@pytest.fixture()
def conn(db: Endpoints) -> Any:
    """Two units (a shop, a hospital) with a fire panel each; a third unit with nothing."""
    with psycopg.connect(db.dsn(), autocommit=True) as c:
        reg.add_unit(c, "shop", "Shop", district="D1")
        reg.add_unit(c, "hosp", "Hospital", district="D1", category="hospital")
        reg.add_unit(c, "empty", "Empty", district="D2")
        reg.add_device(c, "utd-s", "shop", DeviceType.UTD)
        reg.add_device(c, "utd-h", "hosp", DeviceType.UTD)
        yield c


def alert(
    c: psycopg.Connection[Any],
    device: str,
    rule: str,
    opened: dt.datetime,
    *,
    state: str = "firing",
    cleared: dt.datetime | None = None,
    closed: dt.datetime | None = None,
    verification: str | None = None,
    fire: bool = False,
) -> None:
    """An alert row as the engine and an operator would have left it."""
    c.execute(
        "INSERT INTO alerts (device_num, unit_id, rule_id, severity, state, opened_at,"
        " last_seen_at, cleared_at, closed_at, verification, needs_verification)"
        " SELECT num, unit_id, %s, 'major', %s, %s, %s, %s, %s, %s, %s FROM devices WHERE id = %s",
        (rule, state, opened, opened, cleared, closed, verification, fire, device),
    )


def test_facts_count_hours_inside_the_window(conn: psycopg.Connection[Any]) -> None:
    """Hours are clipped to the window and end when cleared; closed alerts before it are gone."""
    # A fault opened 9 days ago and still open: 7 × 24 h inside the window, open now.
    alert(conn, "utd-s", "panel_fault", NOW - 9 * 24 * H)
    # A fault of 3 h, cleared and closed yesterday.
    alert(
        conn,
        "utd-s",
        "main_power_fault",
        NOW - 27 * H,
        state="closed",
        cleared=NOW - 24 * H,
        closed=NOW - 23 * H,
    )
    # Closed two weeks ago: outside the window entirely.
    alert(
        conn,
        "utd-s",
        "backup_power_fault",
        NOW - 15 * 24 * H,
        state="closed",
        cleared=NOW - 14 * 24 * H,
        closed=NOW - 14 * 24 * H,
    )
    # Opened after "now" (a clock ahead): not counted.
    alert(conn, "utd-s", "device_offline", NOW + H)
    rows = {(r.unit_id, r.rule_id): r for r in store.alert_facts(conn, NOW, WEEK)}
    fault = rows[("shop", "panel_fault")]
    assert (fault.opened, fault.open_now) == (0, 1) and fault.hours == pytest.approx(168)
    power = rows[("shop", "main_power_fault")]
    assert (power.opened, power.open_now) == (1, 0) and power.hours == pytest.approx(3)
    assert ("shop", "backup_power_fault") not in rows
    assert ("shop", "device_offline") not in rows
    assert rows[("empty", None)].hours is None  # a unit without alerts still has a row


def test_fire_alarm_outcomes_are_separate_facts(conn: psycopg.Connection[Any]) -> None:
    """Unverified, false-alarm and confirmed-fire alarms come back as three facts."""
    alert(conn, "utd-h", "fire_alarm", NOW - H, fire=True)
    alert(
        conn,
        "utd-h",
        "fire_alarm",
        NOW - 5 * H,
        state="closed",
        cleared=NOW - 4 * H,
        closed=NOW - 4 * H,
        verification="false_alarm",
        fire=True,
    )
    alert(
        conn,
        "utd-h",
        "fire_alarm",
        NOW - 8 * H,
        state="closed",
        cleared=NOW - 7 * H,
        closed=NOW - 7 * H,
        verification="false_alarm",
        fire=True,
    )
    units = {u.unit_id: u for u in facts_of(store.alert_facts(conn, NOW, WEEK))}
    got = {(a.verification, a.opened) for a in units["hosp"].alerts}
    assert got == {("unverified", 1), ("false_alarm", 2)}


def test_changes_only_when_the_grade_changes(conn: psycopg.Connection[Any]) -> None:
    """Grading twice with the same data records one change per unit; a new fact adds one more."""
    model = load_model()
    first = grade_now(conn, model, NOW)
    assert first.changed == 3  # every unit's first grade is a change (from none)
    assert grade_now(conn, model, NOW + H).changed == 0
    for minutes in (10, 20, 30):
        alert(
            conn,
            "utd-s",
            "fire_alarm",
            NOW - minutes * dt.timedelta(minutes=1),
            state="closed",
            cleared=NOW,
            closed=NOW,
            verification="false_alarm",
            fire=True,
        )
    third = grade_now(conn, model, NOW + 2 * H, trigger="request:night shift")
    assert third.changed == 1
    current = store.current_grades(conn)
    assert current["shop"].grade == "yellow" and current["shop"].since == NOW + 2 * H
    assert current["hosp"].since == NOW  # unchanged: the grade keeps its start
    history = store.grade_history(conn, "shop", 10)
    assert [(c.from_grade, c.to_grade, c.trigger) for c in history] == [
        ("blue", "yellow", "request:night shift"),
        (None, "blue", "schedule"),
    ]
    assert history[0].reasons[0]["en"] == "3 false alarms in 7 days"
    assert history[0].reasons[0]["zh-CN"] == "7天内误报3次"


def test_one_unit_graded_alone(conn: psycopg.Connection[Any]) -> None:
    """Grading one unit writes that unit only."""
    run = grade_now(conn, load_model(), NOW, units=["hosp"], trigger="request:x", wait=True)
    assert [g.unit_id for g in run.grades] == ["hosp"]
    assert set(store.current_grades(conn)) == {"hosp"}


def test_a_second_grader_skips_while_one_runs(db: Endpoints, conn: psycopg.Connection[Any]) -> None:
    """Two engines grading at once: the one that finds the lock taken skips its round."""
    with psycopg.connect(db.dsn()) as other:
        assert store.try_lock(other)  # held until `other` commits
        run = grade_now(conn, load_model(), NOW)
        assert run.skipped and not store.current_grades(conn)
    assert not grade_now(conn, load_model(), NOW).skipped


def test_grade_all_in_chunks(conn: psycopg.Connection[Any]) -> None:
    """Every unit is graded, a chunk a transaction, and counted by grade."""
    alert(conn, "utd-h", "fire_alarm", NOW - H, fire=True)
    census = grade_all(conn, load_model(), NOW, chunk=2)
    assert (census.units, census.changed, census.skipped) == (3, 3, False)
    assert census.grades == {"blue": 2, "yellow": 1}  # the hospital: 15 × 1.5
