"""Grade units now (one transaction: read facts, grade, write) and on a schedule (a thread that
also runs the hazard loop's round first: hazards the data finds, overdue ones escalated)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
import structlog

from store import grades as store
from supervision.grade import AlertFacts, UnitFacts, UnitGrade, grade_units
from supervision.hazard_loop import HazardOptions, run_round
from supervision.model import RiskModel

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class GradingRun:
    """What one grading did: the grades, how many changed; skipped when another engine graded."""

    grades: tuple[UnitGrade, ...]
    changed: int
    skipped: bool = False


def facts_of(rows: Sequence[store.FactRow]) -> list[UnitFacts]:
    """Group the facts query's rows into one UnitFacts per unit."""
    units: dict[str, tuple[str, list[AlertFacts]]] = {}
    for r in rows:
        _, alerts = units.setdefault(r.unit_id, (r.category, []))
        if r.rule_id is not None:
            alerts.append(
                AlertFacts(r.rule_id, r.verification, r.opened or 0, r.open_now or 0, r.hours or 0)
            )
    return [UnitFacts(uid, cat, tuple(alerts)) for uid, (cat, alerts) in units.items()]


def _reasons(g: UnitGrade) -> list[dict[str, Any]]:
    out = []
    for r in g.reasons:
        d = asdict(r)
        d["zh-CN"] = d.pop("zh_cn")
        out.append(d)
    return out


def grade_now(
    conn: psycopg.Connection[Any],
    model: RiskModel,
    now: dt.datetime,
    *,
    units: Sequence[str] | None = None,
    trigger: str = "schedule",
    wait: bool = False,
) -> GradingRun:
    """Grade every unit (or the given ones) in one transaction and store the grades.

    Another engine grading at the same moment makes this one skip (wait=False), or wait for
    it (wait=True, for a grade someone asked for).
    """
    with conn.transaction():
        if wait:
            store.lock(conn)
        elif not store.try_lock(conn):
            return GradingRun((), 0, skipped=True)
        facts = facts_of(store.alert_facts(conn, now, dt.timedelta(days=model.window_days), units))
        graded = grade_units(model, facts)
        changed = store.write_grades(
            conn,
            [store.GradeRow(g.unit_id, g.grade.value, g.score, _reasons(g)) for g in graded],
            now,
            version=model.version,
            trigger=trigger,
        )
    return GradingRun(tuple(graded), changed)


@dataclass(frozen=True, slots=True)
class Census:
    """What grading every unit gave: how many units, how many changed, how many of each grade."""

    units: int
    changed: int
    grades: dict[str, int]
    skipped: bool = False


def grade_all(
    conn: psycopg.Connection[Any], model: RiskModel, now: dt.datetime, chunk: int = 2_000
) -> Census:
    """Grade every unit, `chunk` units a transaction, so a city's grades never sit in memory
    at once; a chunk another engine is grading makes this round stop (it grades them too)."""
    ids = store.unit_ids(conn)
    units, changed = 0, 0
    counts: dict[str, int] = {}
    for i in range(0, len(ids), chunk):
        run = grade_now(conn, model, now, units=ids[i : i + chunk])
        if run.skipped:
            return Census(units, changed, counts, skipped=True)
        units += len(run.grades)
        changed += run.changed
        for g in run.grades:
            counts[g.grade.value] = counts.get(g.grade.value, 0) + 1
    return Census(units, changed, counts)


class GradingWorker:
    """Every `every_s` seconds on a connection of its own: the hazard round (when given
    hazards), then grades every unit."""

    def __init__(
        self,
        model: RiskModel,
        connect: Callable[[], psycopg.Connection[Any]],
        every_s: float,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        hazards: HazardOptions | None = None,
        rule_names: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.hazards = hazards
        self.rule_names = rule_names or {}
        self._connect = connect
        self._every_s = every_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        """Start the thread; the first grading runs at once."""
        self._thread = threading.Thread(target=self._run, name="grading", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """Whether the thread still runs (the engine's watchdog asks)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 15) -> None:
        """Stop after the grading under way, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _once(self, conn: psycopg.Connection[Any]) -> None:
        if self.hazards is not None:
            done = run_round(conn, self.hazards, self.rule_names, self._clock())
            if done.found or done.reminded or done.overdue:
                log.info(
                    "hazard round",
                    found=done.found,
                    reminded=done.reminded,
                    overdue=done.overdue,
                    messages=done.messages,
                )
        census = grade_all(conn, self.model, self._clock())
        if census.changed:
            log.info(
                "unit grades changed",
                changed=census.changed,
                units=census.units,
                red=census.grades.get("red", 0),
                orange=census.grades.get("orange", 0),
            )

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        failing = False
        try:
            while not self._stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                    self._once(conn)
                    if failing:
                        log.info("unit grading works again")
                    failing = False
                except psycopg.Error as exc:
                    # The database is away (or refused once): grades wait for the next round.
                    if not failing:
                        log.warning("cannot grade units; retrying", error=str(exc).strip()[:200])
                    failing = True
                    if conn is not None:
                        conn.close()
                    conn = None
                self._stop.wait(min(self._every_s, 5.0) if failing else self._every_s)
        except BaseException as exc:  # kept for the watchdog, which logs it once
            self.failure = exc
        finally:
            if conn is not None:
                conn.close()
