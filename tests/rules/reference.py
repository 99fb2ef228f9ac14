"""A plain reading-at-a-time evaluator with the engine's documented semantics (tests only)."""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.catalog import EVENT_KIND_IDS, METRIC_BY_NAME
from devices.registry import Registry
from rules.model import AttributeThreshold, Rule, RuleFile, Threshold

PER_MS = {"second": 1000.0, "minute": 60_000.0}


def resolve(th: Threshold | None, attrs: dict[str, object]) -> float | None:
    if th is None:
        return None
    if isinstance(th, AttributeThreshold):
        raw = attrs.get(th.attribute, th.default)
        return float(raw) * th.factor  # type: ignore[arg-type]
    return float(th)


@dataclass
class State:
    raw: bool = False
    active: bool = False
    since: int = 0
    last_ts: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)


class Reference:
    """Evaluates rules one reading at a time, each batch in timestamp order."""

    def __init__(self, rule_file: RuleFile, registry: Registry) -> None:
        self.rules = [r for r in rule_file.rules if r.kind not in ("deadman",)]
        self.registry = registry
        self.state: dict[tuple[str, int], State] = {}

    def _levels(self, r: Rule, num: int) -> tuple[float, float] | None:
        dev = self.registry.by_num[num]
        if not r.applies_to(dev.type):
            return None
        attrs = {**dev.attributes, "heartbeat_s": dev.heartbeat_s}
        if r.kind == "event":
            return (0.0, 0.0)
        first, second = (r.low, r.high) if r.kind == "outside" else (r.threshold, r.clear)
        a = resolve(first, attrs)
        b = resolve(second if second is not None else first, attrs)
        assert a is not None and b is not None
        return a, b

    def feed(
        self,
        readings: list[tuple[int, int, int, float]],
        events: list[tuple[int, int, int]] = (),  # type: ignore[assignment]
    ) -> list[tuple[str, int, int, bool, float]]:
        """Evaluate one batch; return (rule, device, ts, opened, value) per transition."""
        out: list[tuple[str, int, int, bool, float]] = []
        items = [(ts, dev, "m", metric, value) for dev, metric, ts, value in readings]
        items += [(ts, dev, "e", kind, float(kind)) for dev, kind, ts in events]
        items.sort(key=lambda x: x[0])  # stable: arrival order among equal timestamps
        batch_seen: set[tuple[str, int, int, int]] = set()
        for ts, dev, src, what, value in items:
            for r in self.rules:
                if src == "m" and (r.kind == "event" or METRIC_BY_NAME[r.metric or ""].id != what):
                    continue
                if src == "e":
                    if r.kind != "event":
                        continue
                    assert r.event is not None
                    kinds = {EVENT_KIND_IDS[r.event]}
                    if r.clear_event is not None:
                        kinds.add(EVENT_KIND_IDS[r.clear_event])
                    if what not in kinds:
                        continue
                levels = self._levels(r, dev)
                if levels is None:
                    continue
                st = self.state.setdefault((r.id, dev), State())
                if r.kind == "event":
                    # Every event of the kind opens (the planner tells new points from
                    # repeats); its clear event clears what is open. Older than the last one:
                    # late; the same event twice in a batch counts once.
                    if ts < st.last_ts or (r.id, dev, ts, what) in batch_seen:
                        continue
                    batch_seen.add((r.id, dev, ts, what))
                    st.last_ts = ts
                    assert r.event is not None
                    opened = what == EVENT_KIND_IDS[r.event]
                    if opened or st.active:
                        out.append((r.id, dev, ts, opened, value))
                    st.active = st.raw = opened
                    continue
                if ts <= st.last_ts:
                    continue  # late, or the same reading again
                st.last_ts = ts
                decision, shown = self._decide(r, levels, st, ts, value)
                if decision is not None:
                    new_raw = decision
                    if new_raw and not st.raw:
                        st.since = ts
                    if not new_raw:
                        st.since = 0
                    st.raw = new_raw
                alert = st.raw and (ts - st.since >= r.for_ms)
                if alert != st.active:
                    st.active = alert
                    out.append((r.id, dev, ts, alert, shown))
        return out

    def _decide(
        self, r: Rule, levels: tuple[float, float], st: State, ts: int, v: float
    ) -> tuple[bool | None, float]:
        a, b = levels
        if r.kind == "above":
            return (True if v >= a else False if v < b else None), v
        if r.kind == "below":
            return (True if v < a else False if v >= b else None), v
        if r.kind == "outside":
            return (v < a or v > b), v
        if r.kind == "event":
            assert r.event is not None
            if v == EVENT_KIND_IDS[r.event]:
                return True, v
            return False, v
        window = int(r.window_s * 1000)
        ref = next(((t, x) for t, x in st.history if t >= ts - window), None)
        st.history.append((ts, v))
        st.history = [(t, x) for t, x in st.history if t >= ts - window]
        if ref is None:
            return None, 0.0
        rate = (v - ref[1]) / (ts - ref[0]) * PER_MS[r.per]
        if r.direction == "falling":
            return rate <= -a, rate
        if r.direction == "rising":
            return rate >= a, rate
        return abs(rate) >= a, rate
