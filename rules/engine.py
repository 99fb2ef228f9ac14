"""The vectorised rule engine: whole batches as numpy arrays, per-(rule, device) state between them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from devices.catalog import EVENT_KIND_IDS, METRIC_BY_NAME
from devices.registry import Registry
from rules.model import AttributeThreshold, Rule, RuleFile, Threshold

_HOLD = np.int8(-1)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a rule's condition for one device: opened (breach) or cleared."""

    rule: Rule
    device_num: int
    ts_ms: int
    value: float
    threshold: float
    opened: bool


def _resolve(th: Threshold | None, attrs: dict[str, object]) -> float:
    if th is None:
        return np.nan
    if isinstance(th, AttributeThreshold):
        raw = attrs.get(th.attribute, th.default)
        try:
            return float(raw) * th.factor  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return th.default * th.factor
    return float(th)


class RuleEngine:
    """Evaluates a rule file over batches; emits only transitions, never steady states."""

    def __init__(self, rule_file: RuleFile, registry: Registry) -> None:
        self.rules = list(rule_file.rules)
        self.index = {r.id: i for i, r in enumerate(self.rules)}
        self._metric_rules: dict[int, list[int]] = {}
        self._event_rules: list[int] = []
        for i, r in enumerate(self.rules):
            if r.kind == "event":
                self._event_rules.append(i)
            else:
                assert r.metric is not None
                self._metric_rules.setdefault(METRIC_BY_NAME[r.metric].id, []).append(i)
        self._cap = 0
        n = len(self.rules)
        self.active = np.zeros((n, 0), dtype=bool)
        self.last_ts = np.zeros((n, 0), dtype=np.int64)
        self._a = np.zeros((n, 0))
        self._b = np.zeros((n, 0))
        self.update_registry(registry)

    def update_registry(self, registry: Registry) -> None:
        """Resolve thresholds per device (attribute overrides) and grow state for new devices."""
        cap = max(self._cap, registry.max_num + 1)
        if cap > self._cap:
            cap = max(cap, int(self._cap * 1.5) + 64)
            grow = cap - self._cap
            self.active = np.pad(self.active, ((0, 0), (0, grow)))
            self.last_ts = np.pad(self.last_ts, ((0, 0), (0, grow)))
            self._cap = cap
        n = len(self.rules)
        a = np.full((n, cap), np.nan)
        b = np.full((n, cap), np.nan)
        # Devices without overriding attributes share the rule's default: fill those by type mask.
        nums_by_type: dict[str, list[int]] = {}
        for d in registry.by_num.values():
            nums_by_type.setdefault(d.type, []).append(d.num)
        for i, r in enumerate(self.rules):
            nums = np.asarray(nums_by_type.get(r.device_type, []), dtype=np.int64)
            if r.kind == "event":
                a[i, nums] = 0.0
                continue
            first, second = (r.low, r.high) if r.kind == "outside" else (r.threshold, r.clear)
            a[i, nums] = _resolve(first, {})
            b[i, nums] = _resolve(second if second is not None else first, {})
            attrs_used = {t.attribute for t in (first, second) if isinstance(t, AttributeThreshold)}
            if not attrs_used:
                continue
            for num in nums.tolist():
                attrs = registry.by_num[num].attributes
                if attrs and not attrs_used.isdisjoint(attrs):
                    a[i, num] = _resolve(first, attrs)
                    b[i, num] = _resolve(second if second is not None else first, attrs)
        self._a, self._b = a, b

    def restore(self, rule_id: str, device_num: int, last_ts_ms: int) -> None:
        """Mark a (rule, device) as breached, as when an open alert is found at start."""
        i = self.index.get(rule_id)
        if i is not None and 0 <= device_num < self._cap:
            self.active[i, device_num] = True
            self.last_ts[i, device_num] = max(int(self.last_ts[i, device_num]), last_ts_ms)

    def evaluate(
        self,
        dev: npt.NDArray[np.int32],
        metric: npt.NDArray[np.int16],
        ts: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        ev_dev: npt.NDArray[np.int32] | None = None,
        ev_kind: npt.NDArray[np.int16] | None = None,
        ev_ts: npt.NDArray[np.int64] | None = None,
    ) -> list[Transition]:
        """Evaluate a batch of readings (and events) and return the transitions, oldest first."""
        out: list[Transition] = []
        if dev.size:
            order = np.lexsort((ts, dev, metric))
            m_s, d_s, t_s, v_s = metric[order], dev[order], ts[order], value[order]
            present = np.unique(m_s)
            bounds = np.searchsorted(m_s, present, side="left")
            ends = np.searchsorted(m_s, present, side="right")
            for mid, lo, hi in zip(present.tolist(), bounds.tolist(), ends.tolist(), strict=True):
                for i in self._metric_rules.get(mid, ()):
                    self._run(i, d_s[lo:hi], t_s[lo:hi], v_s[lo:hi], out)
        if ev_dev is not None and ev_kind is not None and ev_ts is not None and ev_dev.size:
            order = np.lexsort((ev_ts, ev_dev))
            d_s, k_s, t_s = ev_dev[order], ev_kind[order], ev_ts[order]
            for i in self._event_rules:
                r = self.rules[i]
                assert r.event is not None
                wanted = [EVENT_KIND_IDS[r.event]]
                if r.clear_event is not None:
                    wanted.append(EVENT_KIND_IDS[r.clear_event])
                sel = np.isin(k_s, wanted)
                if sel.any():
                    self._run(i, d_s[sel], t_s[sel], k_s[sel].astype(np.float64), out)
        out.sort(key=lambda tr: tr.ts_ms)
        return out

    def _decide(
        self, i: int, d: npt.NDArray[np.int32], v: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.int8]:
        r = self.rules[i]
        a = self._a[i, d]
        b = self._b[i, d]
        dec = np.full(d.shape, _HOLD, dtype=np.int8)
        if r.kind == "above":
            dec[v < b] = 0
            dec[v >= a] = 1
        elif r.kind == "below":
            dec[v >= b] = 0
            dec[v < a] = 1
        elif r.kind == "outside":
            dec[(v >= a) & (v <= b)] = 0
            dec[(v < a) | (v > b)] = 1
        else:
            assert r.event is not None
            if r.clear_event is not None:
                dec[v == EVENT_KIND_IDS[r.clear_event]] = 0
            dec[v == EVENT_KIND_IDS[r.event]] = 1
        return dec

    def _run(
        self,
        i: int,
        d: npt.NDArray[np.int32],
        t: npt.NDArray[np.int64],
        v: npt.NDArray[np.float64],
        out: list[Transition],
    ) -> None:
        # Devices of another type have NaN thresholds; readings older than the state are late
        # (store-and-forward) and must not open alerts for the past.
        keep = ~np.isnan(self._a[i, d]) & (t > self.last_ts[i, d])
        if not keep.all():
            d, t, v = d[keep], t[keep], v[keep]
        n = d.size
        if n == 0:
            return
        dec = self._decide(i, d, v)
        start = np.empty(n, dtype=bool)
        start[0] = True
        np.not_equal(d[1:], d[:-1], out=start[1:])
        gstart = np.flatnonzero(start)
        gid = np.cumsum(start) - 1
        carried = self.active[i, d[gstart]]
        pos = np.where(dec >= 0, np.arange(n), -1)
        last = np.maximum.accumulate(pos)
        within = last >= gstart[gid]
        state = np.where(within, dec[np.maximum(last, 0)] == 1, carried[gid])
        prev = np.empty(n, dtype=bool)
        prev[1:] = state[:-1]
        prev[gstart] = carried
        changed = np.flatnonzero(state != prev)
        gend = np.r_[gstart[1:] - 1, n - 1]
        self.active[i, d[gend]] = state[gend]
        self.last_ts[i, d[gend]] = t[gend]
        if changed.size == 0:
            return
        rule = self.rules[i]
        thr = self._a[i, d[changed]] if rule.kind != "event" else np.full(changed.size, np.nan)
        for k, c in enumerate(changed.tolist()):
            out.append(
                Transition(rule, int(d[c]), int(t[c]), float(v[c]), float(thr[k]), bool(state[c]))
            )
