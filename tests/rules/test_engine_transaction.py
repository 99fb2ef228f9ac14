"""Rule state advances only with the commit of the batch that moved it: rollback restores it exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.catalog import EVENT_KIND_IDS, METRIC_BY_NAME, DeviceType, EventKind
from devices.registry import Device, Registry
from rules.engine import RuleEngine
from rules.loader import load_rules

RC = METRIC_BY_NAME["residual_current_ma"].id
PRESSURE = METRIC_BY_NAME["pressure_mpa"].id
REG = Registry.of(
    [
        Device(1, "em-1", "u1", DeviceType.ELECTRICAL),
        Device(2, "wp-1", "u1", DeviceType.WATER_PRESSURE),
        Device(3, "utd-1", "u1", DeviceType.UTD),
    ]
)
T0 = 1_800_000_000_000
FIRE = EVENT_KIND_IDS[EventKind.FIRE_ALARM]


def evaluate(engine: RuleEngine, rows: list[tuple[int, int, int, float]]) -> list[str]:
    dev, met, ts, val = (np.array(c) for c in zip(*rows, strict=True))
    out = engine.evaluate(
        dev.astype(np.int32), met.astype(np.int16), ts.astype(np.int64), val.astype(np.float64)
    )
    return [f"{t.rule.id}:{t.device_num}:{'open' if t.opened else 'clear'}" for t in out]


def snapshot(engine: RuleEngine) -> dict[str, object]:
    hist = {
        i: {n: (h[0].tolist(), h[1].tolist()) for n, h in per.items()}
        for i, per in engine._history.items()
    }
    return {
        "raw": engine.raw.copy(),
        "active": engine.active.copy(),
        "since": engine.since.copy(),
        "last_ts": engine.last_ts.copy(),
        "last_seen": engine.last_seen.copy(),
        "history": hist,
    }


def same(a: dict[str, object], b: dict[str, object]) -> bool:
    return all(
        np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k]  # type: ignore[arg-type]
        for k in a
    )


def test_a_failed_write_then_a_retry_opens_the_alert_exactly_once() -> None:
    """First evaluation opens; the write fails and is rolled back; the retry opens it again, once."""
    engine = RuleEngine(load_rules(), REG)
    batch = [(1, RC, T0, 350.0)]
    engine.begin()
    assert evaluate(engine, batch) == ["residual_current_high:1:open"]
    engine.rollback()  # the write raised
    engine.begin()
    assert evaluate(engine, batch) == ["residual_current_high:1:open"]
    engine.commit()  # the retry committed
    engine.begin()
    assert evaluate(engine, batch) == []  # the same reading again is a redelivery, not news
    engine.commit()


def test_rollback_marks_restored_state_dirty_so_it_is_saved() -> None:
    """Rows taken by a failed batch are void: after rollback the restored cells are dirty again."""
    engine = RuleEngine(load_rules(), REG)
    engine.begin()
    evaluate(engine, [(1, RC, T0, 350.0)])
    taken = engine.take_dirty()
    assert any(r.active for r in taken)
    engine.rollback()
    again = {(r.rule_id, r.device_num): r for r in engine.take_dirty()}
    assert not again[("residual_current_high", 1)].active


def test_events_rate_and_deadman_state_roll_back() -> None:
    """Fire-alarm, rate-of-fall history and deadman clearing are undone together."""
    engine = RuleEngine(load_rules(), REG)
    engine.begin()
    evaluate(engine, [(2, PRESSURE, T0, 0.40), (2, PRESSURE, T0 + 10_000, 0.39)])
    engine.commit()
    assert engine.check_silence(T0 + 3_600_000)  # wp-1 silent for an hour: offline alert opens
    before = snapshot(engine)
    engine.begin()
    ev = np.array([3], np.int32), np.array([FIRE], np.int16), np.array([T0 + 3_600_001], np.int64)
    engine.evaluate(
        np.array([2], np.int32),
        np.array([PRESSURE], np.int16),
        np.array([T0 + 3_600_000], np.int64),
        np.array([0.05]),
        *ev,
    )
    assert not same(before, snapshot(engine))
    engine.rollback()
    assert same(before, snapshot(engine))


readings = st.lists(
    st.tuples(
        st.sampled_from([1, 2]),
        st.integers(0, 600_000),
        st.floats(0.0, 1.5, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(first=readings, failed=readings)
def test_rollback_restores_every_cell(
    first: list[tuple[int, int, float]], failed: list[tuple[int, int, float]]
) -> None:
    """Whatever a batch did to rule state, rollback gives back exactly the state before it."""
    engine = RuleEngine(load_rules(), REG)

    def rows(batch: list[tuple[int, int, float]]) -> list[tuple[int, int, int, float]]:
        return [
            (d, RC if d == 1 else PRESSURE, T0 + t, v * 400 if d == 1 else v) for d, t, v in batch
        ]

    engine.begin()
    evaluate(engine, rows(first))
    engine.commit()
    before = snapshot(engine)
    engine.begin()
    evaluate(engine, rows(failed))
    engine.rollback()
    assert same(before, snapshot(engine))


def test_an_alert_that_opens_and_clears_in_one_batch_is_not_refired_after_a_restart() -> None:
    """Open and clear within one batch leave raw/active as they were, yet the state is saved with
    its last_ts, so the same batch redelivered to a restarted engine fires nothing again."""
    engine = RuleEngine(load_rules(), REG)
    batch = [(1, RC, T0, 40.0), (1, RC, T0 + 1000, 350.0), (1, RC, T0 + 2000, 40.0)]
    engine.begin()
    assert evaluate(engine, batch) == [
        "residual_current_high:1:open",
        "residual_current_high:1:clear",
    ]
    saved = engine.take_dirty()
    engine.commit()
    restarted = RuleEngine(load_rules(), REG)
    restarted.load_state(saved)
    assert evaluate(restarted, batch) == []


@settings(max_examples=60, deadline=None)
@given(
    first=readings,
    second=readings,
    outcome=st.sampled_from(["first_fails", "second_fails", "second_raised"]),
)
def test_two_batches_in_flight_roll_back_to_the_last_commit(
    first: list[tuple[int, int, float]], second: list[tuple[int, int, float]], outcome: str
) -> None:
    """Ingest evaluates batch N+1 while N is written. If N fails, both are undone (N+1 rested on
    N's state); if N commits and N+1 fails, or N+1's evaluation raised (abandon), the state is
    N's, exactly as if N+1 never ran."""
    engine = RuleEngine(load_rules(), REG)

    def rows(batch: list[tuple[int, int, float]], base: int) -> list[tuple[int, int, int, float]]:
        return [
            (d, RC if d == 1 else PRESSURE, base + t, v * 400 if d == 1 else v) for d, t, v in batch
        ]

    before = snapshot(engine)
    engine.begin()
    evaluate(engine, rows(first, T0))
    after_first = snapshot(engine)
    engine.begin()
    evaluate(engine, rows(second, T0 + 1_000_000))
    assert engine.in_flight() == 2
    if outcome == "second_raised":
        engine.abandon()
        assert engine.in_flight() == 1
        assert same(after_first, snapshot(engine))
    if outcome != "first_fails":
        engine.commit()
    engine.rollback()
    assert engine.in_flight() == 0
    assert same(before if outcome == "first_fails" else after_first, snapshot(engine))


def test_a_rolled_back_pair_saves_the_restored_cells() -> None:
    """N opened an alert and N+1 kept it; both rolled back: the restored (inactive) state is what
    the next batch saves, not the void rows that N and N+1 took."""
    engine = RuleEngine(load_rules(), REG)
    engine.begin()
    evaluate(engine, [(1, RC, T0, 350.0)])
    assert any(r.active for r in engine.take_dirty())
    engine.begin()
    evaluate(engine, [(1, RC, T0 + 1000, 360.0)])
    engine.take_dirty()
    engine.rollback()
    again = {(r.rule_id, r.device_num): r for r in engine.take_dirty()}
    assert not again[("residual_current_high", 1)].active
    engine.begin()
    assert evaluate(engine, [(1, RC, T0 + 1000, 360.0)]) == ["residual_current_high:1:open"]
