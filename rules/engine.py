"""The vectorised rule engine: whole batches as numpy arrays, per-(rule, device) state between them.

Semantics (the reference evaluator in tests/rules/reference.py implements the same, one reading
at a time):

- Readings of one (rule, device) are taken in timestamp order. A reading not newer than the
  last one evaluated is late (store-and-forward) and is not evaluated; neither is a second
  reading with the same timestamp.
- Each reading gives a decision: breach, clear, or hold (between the clear level and the
  threshold of a hysteresis rule). The raw condition is the last decision (held over).
- With `for`, the alert opens at the first reading at which the raw condition has held since a
  reading at least `for` seconds earlier; it clears as soon as the raw condition clears.
- Rate rules compare a reading with the oldest reading of the device inside `window_s` before
  it (history carried across batches); with none there, the reading holds.
- Event rules open on every event of their kind, one alert per alarming point: each event is
  an `opened` transition naming its point (loop, point, the panel's text), so a second detector
  or a later alarm after an operator closed the first is never swallowed; the planner decides
  whether it opens an alert or repeats an open one. Their clear event (the panel's reset)
  clears every point of the device. Events older than the last one evaluated are late.
- Deadman rules open on a timer when a device has been silent longer than the threshold and
  clear at its next reading or event sent after the alert opened (a late, store-and-forward
  reading from before the silence does not clear it).
- Only transitions (opened, cleared) are emitted, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from devices.catalog import EVENT_KIND_IDS, METRIC_BY_NAME, DeviceType
from devices.registry import Device, Registry
from rules.model import AttributeThreshold, RuleFile, Threshold
from rules.transitions import Point, Transition

_HOLD = np.int8(-1)
_NONE = np.int64(-1)
_PER_MS = {"second": 1000.0, "minute": 60_000.0}
__all__ = ["Point", "RuleEngine", "StateRow", "Transition"]


@dataclass(frozen=True, slots=True)
class StateRow:
    """The persisted state of one (rule, device)."""

    rule_id: str
    device_num: int
    raw: bool
    active: bool
    since_ms: int
    last_ts: int


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


def _group_starts(d: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
    start = np.empty(d.size, dtype=bool)
    if d.size:
        start[0] = True
        np.not_equal(d[1:], d[:-1], out=start[1:])
    return start


def _ffill_index(defined: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """For each position, the index of the last defined position at or before it (-1: none)."""
    pos = np.where(defined, np.arange(defined.size), -1)
    return np.maximum.accumulate(pos) if pos.size else pos


@dataclass(frozen=True, slots=True)
class _Groups:
    """Where each device's run of readings starts and ends in arrays sorted by (device, ts)."""

    gstart: npt.NDArray[np.int64]
    gid: npt.NDArray[np.int64]
    gend: npt.NDArray[np.int64]
    first_of_ts: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, d: npt.NDArray[np.int32], t: npt.NDArray[np.int64]) -> _Groups:
        start = _group_starts(d)
        gstart = np.flatnonzero(start)
        first = np.ones(d.size, dtype=bool)
        if d.size > 1:
            first[1:] = start[1:] | (t[1:] != t[:-1])
        return cls(gstart, np.cumsum(start) - 1, np.r_[gstart[1:] - 1, d.size - 1], first)


@dataclass(frozen=True, slots=True)
class _StateUndo:
    """The state of rule i for some devices as it was before an evaluation changed it."""

    i: int
    cols: npt.NDArray[np.int64]
    raw: npt.NDArray[np.bool_]
    active: npt.NDArray[np.bool_]
    since: npt.NDArray[np.int64]
    last_ts: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _SeenUndo:
    cols: npt.NDArray[np.int64]
    last_seen: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _HistoryUndo:
    i: int
    num: int
    was: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None


_Undo = _StateUndo | _SeenUndo | _HistoryUndo
# One batch in flight: its undo log, and the dirty list as it was when the batch began.
_InFlight = tuple[list[_Undo], list[tuple[int, npt.NDArray[np.int32]]]]


_TYPE_CODES = {t: k + 1 for k, t in enumerate(DeviceType)}  # 0: no device at that number


class _Limits:
    """One threshold per (rule, device), read as `limits[i, d]` or a whole row `limits[i]`.

    NaN means the rule does not apply to the device (another type). Held as a default per rule
    and a type code per device; only a rule where some device overrides its default through an
    attribute (or heartbeat_s, for deadman rules) keeps a dense row. Two dense float64 tables
    of rules x devices took 38 MB for a city's 100,000 devices, twice that while reloading."""

    def __init__(self, n_rules: int, type_code: npt.NDArray[np.int8]) -> None:
        self.type_code = type_code
        self.default = np.full(n_rules, np.nan)
        self.applies = np.zeros((n_rules, len(_TYPE_CODES) + 1), dtype=bool)
        self.dense: dict[int, npt.NDArray[np.float64]] = {}

    def full_row(self, i: int) -> npt.NDArray[np.float64]:
        """Rule i's threshold for every device number (a new array)."""
        return np.where(self.applies[i][self.type_code], self.default[i], np.nan)

    def __getitem__(self, key: int | tuple[int, Any]) -> Any:
        if not isinstance(key, tuple):
            row = self.dense.get(key)
            return row if row is not None else self.full_row(key)
        i, d = key
        row = self.dense.get(i)
        if row is not None:
            return row[d]
        return np.where(self.applies[i][self.type_code[d]], self.default[i], np.nan)


class RuleEngine:
    """Evaluates a rule file over batches; emits only transitions, never steady states."""

    def __init__(self, rule_file: RuleFile, registry: Registry) -> None:
        self.rule_file = rule_file
        self.rules = list(rule_file.rules)
        self.index = {r.id: i for i, r in enumerate(self.rules)}
        self._metric_rules: dict[int, list[int]] = {}
        self._event_rules: list[int] = []
        self._deadman_rules: list[int] = []
        for i, r in enumerate(self.rules):
            if r.kind == "event":
                self._event_rules.append(i)
            elif r.kind == "deadman":
                self._deadman_rules.append(i)
            else:
                assert r.metric is not None
                self._metric_rules.setdefault(METRIC_BY_NAME[r.metric].id, []).append(i)
        n = len(self.rules)
        self._cap = 0
        self.raw = np.zeros((n, 0), dtype=bool)
        self.active = np.zeros((n, 0), dtype=bool)
        self.since = np.zeros((n, 0), dtype=np.int64)
        self.last_ts = np.zeros((n, 0), dtype=np.int64)
        self.last_seen = np.zeros(0, dtype=np.int64)
        self._a = _Limits(n, np.zeros(0, np.int8))
        self._b = _Limits(n, np.zeros(0, np.int8))
        # Rate rules look back over a window: recent (ts, value) per device, by rule index.
        self._history: dict[
            int, dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]
        ] = {i: {} for i, r in enumerate(self.rules) if r.kind == "rate"}
        self._dirty: list[tuple[int, npt.NDArray[np.int32]]] = []
        # Undo log of the newest batch in flight (None: not journaling); see begin().
        self._journal: list[_Undo] | None = None
        # Batches in flight, oldest first: each one's undo log and the dirty list at its begin.
        self._in_flight: list[_InFlight] = []
        # (rule index, device) → when an operator-resolved condition that still holds re-arms.
        self._rearm: dict[tuple[int, int], int] = {}
        # Silence is counted from here at the earliest: after a restart the broker's backlog
        # must get a chance to arrive before a device is called silent.
        self.silence_from_ms = 0
        self.update_registry(registry)

    # --- set-up ---

    def update_registry(self, registry: Registry) -> None:
        """Resolve thresholds per device (attribute overrides) and grow state for new devices."""
        cap = max(self._cap, registry.max_num + 1)
        if cap > self._cap:
            cap = max(cap, int(self._cap * 1.5) + 64)
            grow = cap - self._cap
            self.raw = np.pad(self.raw, ((0, 0), (0, grow)))
            self.active = np.pad(self.active, ((0, 0), (0, grow)))
            self.since = np.pad(self.since, ((0, 0), (0, grow)))
            self.last_ts = np.pad(self.last_ts, ((0, 0), (0, grow)))
            self.last_seen = np.pad(self.last_seen, (0, grow))
            self._cap = cap
        n = len(self.rules)
        type_code = np.zeros(cap, np.int8)
        heartbeat = np.zeros(cap)
        nums_by_type: dict[str, list[int]] = {}
        attributed: dict[str, list[Device]] = {}
        for d in registry.by_num.values():
            nums_by_type.setdefault(d.type, []).append(d.num)
            heartbeat[d.num] = d.heartbeat_s
            if d.attributes:
                attributed.setdefault(d.type, []).append(d)
        for t, nums_of in nums_by_type.items():
            type_code[np.asarray(nums_of, np.int64)] = _TYPE_CODES[DeviceType(t)]
        a, b = _Limits(n, type_code), _Limits(n, type_code)
        for i, r in enumerate(self.rules):
            types = [str(r.device_type)] if r.device_type is not None else list(nums_by_type)
            for lim in (a, b):
                lim.applies[i, [_TYPE_CODES[DeviceType(t)] for t in types]] = True
            if r.kind == "event":
                a.default[i] = 0.0
                b.applies[i] = False
                continue
            first, second = (r.low, r.high) if r.kind == "outside" else (r.threshold, r.clear)
            if second is None:
                second = first
            a.default[i] = _resolve(first, {})
            b.default[i] = _resolve(second, {})
            attrs_used = {t.attribute for t in (first, second) if isinstance(t, AttributeThreshold)}
            if not attrs_used:
                continue
            # Devices that override: every device for heartbeat_s (deadman rules), else the
            # few with attributes; looping over all 100,000 devices per rule took seconds.
            with_attrs = [
                dev
                for t in types
                for dev in attributed.get(t, [])
                if not attrs_used.isdisjoint(dev.attributes)
            ]
            if "heartbeat_s" not in attrs_used and not with_attrs:
                continue
            rows = a.full_row(i), b.full_row(i)
            a.dense[i], b.dense[i] = rows
            for th, row in ((first, rows[0]), (second, rows[1])):
                if isinstance(th, AttributeThreshold) and th.attribute == "heartbeat_s":
                    mine = a.applies[i][type_code]
                    row[mine] = heartbeat[mine] * th.factor
            for dev in with_attrs:
                attrs = {**dev.attributes, "heartbeat_s": dev.heartbeat_s}
                rows[0][dev.num] = _resolve(first, attrs)
                rows[1][dev.num] = _resolve(second, attrs)
        self._a, self._b = a, b

    def restore(self, rule_id: str, device_num: int, last_ts_ms: int) -> None:
        """Mark a (rule, device) as breached, as when an open alert is found at start."""
        i = self.index.get(rule_id)
        if i is not None and 0 <= device_num < self._cap:
            self.raw[i, device_num] = True
            self.active[i, device_num] = True
            if not self.since[i, device_num]:
                self.since[i, device_num] = last_ts_ms
            self.last_ts[i, device_num] = max(int(self.last_ts[i, device_num]), last_ts_ms)

    def load_state(self, rows: Iterable[StateRow]) -> int:
        """Load persisted state (unknown rules and devices are skipped); return rows loaded."""
        loaded = 0
        for row in rows:
            i = self.index.get(row.rule_id)
            if i is None or not 0 <= row.device_num < self._cap:
                continue
            d = row.device_num
            self.raw[i, d], self.active[i, d] = row.raw, row.active
            self.since[i, d], self.last_ts[i, d] = row.since_ms, row.last_ts
            loaded += 1
        return loaded

    def seen(self, device_nums: npt.NDArray[np.int32], ts_ms: npt.NDArray[np.int64]) -> None:
        """Record when devices were last heard of (from the registry at start)."""
        np.maximum.at(self.last_seen, device_nums, ts_ms)

    def take_dirty(self) -> list[StateRow]:
        """Return the (rule, device) states that changed since the last call."""
        chunks, self._dirty = self._dirty, []
        pairs = {(i, int(d)) for i, arr in chunks for d in arr.tolist()}
        return [self._row(i, d) for i, d in sorted(pairs)]

    # --- transactions: state advances only with the commit of the batch that moved it ---

    def begin(self) -> None:
        """Start recording what the next evaluation changes, so that rollback() can undo it.

        Batches stack up: ingest evaluates the next batch while the previous one is being
        written, so several may be in flight, and each commits in the order it began."""
        self._journal = []
        self._in_flight.append((self._journal, list(self._dirty)))

    def commit(self) -> None:
        """Keep the changes of the oldest batch in flight (its batch committed)."""
        if self._in_flight:
            self._in_flight.pop(0)
        self._journal = self._in_flight[-1][0] if self._in_flight else None

    def in_flight(self) -> int:
        """How many evaluated batches are neither committed nor rolled back."""
        return len(self._in_flight)

    def rollback(self) -> None:
        """Undo every batch in flight, newest first: the next evaluation starts from the state
        of the last committed batch (a later batch rested on the one that failed)."""
        in_flight, self._in_flight, self._journal = self._in_flight, [], None
        self._undo(in_flight)

    def abandon(self) -> None:
        """Undo only the newest batch in flight (its evaluation raised); older ones stay."""
        if self._in_flight:
            self._undo([self._in_flight.pop()])
        self._journal = self._in_flight[-1][0] if self._in_flight else None

    def _undo(self, batches: list[_InFlight]) -> None:
        if not batches:
            return
        dirty = batches[0][1]
        for journal, _ in reversed(batches):
            for u in reversed(journal):
                if isinstance(u, _StateUndo):
                    self.raw[u.i, u.cols] = u.raw
                    self.active[u.i, u.cols] = u.active
                    self.since[u.i, u.cols] = u.since
                    self.last_ts[u.i, u.cols] = u.last_ts
                    dirty.append((u.i, u.cols.astype(np.int32)))
                elif isinstance(u, _SeenUndo):
                    self.last_seen[u.cols] = u.last_seen
                elif u.was is None:
                    self._history[u.i].pop(u.num, None)
                else:
                    self._history[u.i][u.num] = u.was
        # Rows taken by the failed batches are void; restored cells are saved with the next one.
        self._dirty = dirty

    def _remember(self, i: int, cols: npt.NDArray[Any]) -> None:
        if self._journal is not None:
            c = np.asarray(cols, np.int64)
            self._journal.append(
                _StateUndo(
                    i, c, self.raw[i, c], self.active[i, c], self.since[i, c], self.last_ts[i, c]
                )
            )

    def _remember_seen(self, cols: npt.NDArray[Any]) -> None:
        if self._journal is not None:
            c = np.unique(np.asarray(cols, np.int64))
            self._journal.append(_SeenUndo(c, self.last_seen[c]))

    def all_state(self) -> list[StateRow]:
        """Every (rule, device) state worth keeping: breached, active, or evaluated at least once."""
        rows = []
        for i in range(len(self.rules)):
            for d in np.flatnonzero(self.raw[i] | self.active[i] | (self.last_ts[i] > 0)).tolist():
                rows.append(self._row(i, d))
        return rows

    def _row(self, i: int, d: int) -> StateRow:
        return StateRow(
            self.rules[i].id,
            d,
            bool(self.raw[i, d]),
            bool(self.active[i, d]),
            int(self.since[i, d]),
            int(self.last_ts[i, d]),
        )

    # --- operator actions ---

    @property
    def rearms(self) -> bool:
        """Whether any rule re-arms after an operator's resolve or close (rule `rearm`)."""
        return any(r.rearm_s is not None for r in self.rules)

    @property
    def max_rearm_s(self) -> float:
        """The longest re-arm time of any rule (0 without any)."""
        return max((r.rearm_s or 0.0 for r in self.rules), default=0.0)

    def operator_closed(self, rule_id: str, device_num: int, at_ms: int) -> None:
        """An operator resolved or closed the alert of (rule, device): a rule with `rearm`
        opens it again if the condition still holds rearm seconds later (see rearm_due)."""
        i = self.index.get(rule_id)
        if i is None or not 0 <= device_num < self._cap:
            return
        rearm_s = self.rules[i].rearm_s
        if rearm_s is not None and self.active[i, device_num]:
            self._rearm[(i, device_num)] = at_ms + int(rearm_s * 1000)

    def rearm_due(self, now_ms: int) -> int:
        """Re-arm conditions whose re-arm time has come and that still hold: the next breaching
        reading (or, for deadman rules, the next silence check) opens the alert again."""
        done = 0
        for (i, d), at in list(self._rearm.items()):
            if at > now_ms:
                continue
            del self._rearm[(i, d)]
            if self.active[i, d]:
                self.active[i, d] = False
                self._dirty.append((i, np.array([d], np.int32)))
                done += 1
        return done

    def reloaded(self, rule_file: RuleFile, registry: Registry) -> RuleEngine:
        """Build an engine for a new rule file, carrying the state of rules that still exist."""
        new = RuleEngine(rule_file, registry)
        new.last_seen[: self.last_seen.size] = self.last_seen[: new.last_seen.size]
        new.silence_from_ms = self.silence_from_ms
        width = min(self._cap, new._cap)
        for j, r in enumerate(new.rules):
            i = self.index.get(r.id)
            if i is None or self.rules[i].shape() != r.shape():
                continue  # a new rule, or one that now means something else: start afresh
            for name in ("raw", "active", "since", "last_ts"):
                getattr(new, name)[j, :width] = getattr(self, name)[i, :width]
            if j in new._history and i in self._history:
                new._history[j] = dict(self._history[i])
            if r.rearm_s is not None:
                new._rearm.update({(j, d): at for (k, d), at in self._rearm.items() if k == i})
        return new

    # --- evaluation ---

    def evaluate(
        self,
        dev: npt.NDArray[np.int32],
        metric: npt.NDArray[np.int16],
        ts: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        ev_dev: npt.NDArray[np.int32] | None = None,
        ev_kind: npt.NDArray[np.int16] | None = None,
        ev_ts: npt.NDArray[np.int64] | None = None,
        ev_points: Sequence[Point | None] | None = None,
    ) -> list[Transition]:
        """Evaluate a batch of readings (and events) and return the transitions, oldest first."""
        out: list[Transition] = []
        if dev.size:
            order = np.lexsort((ts, dev, metric))
            m_s, d_s, t_s, v_s = metric[order], dev[order], ts[order], value[order]
            present = np.unique(m_s)
            los = np.searchsorted(m_s, present, side="left")
            his = np.searchsorted(m_s, present, side="right")
            for mid, lo, hi in zip(present.tolist(), los.tolist(), his.tolist(), strict=True):
                rules = self._metric_rules.get(mid, ())
                if not rules:
                    continue
                d, t, v = d_s[lo:hi], t_s[lo:hi], v_s[lo:hi]
                groups = _Groups.of(d, t)  # shared by every rule on this metric
                for i in rules:
                    self._run(i, d, t, v, out, groups)
        has_events = (
            ev_dev is not None and ev_kind is not None and ev_ts is not None and ev_dev.size
        )
        if has_events:
            assert ev_dev is not None and ev_kind is not None and ev_ts is not None
            order = np.lexsort((ev_ts, ev_dev))
            d_s, k_s, t_s = ev_dev[order], ev_kind[order], ev_ts[order]
            for i in self._event_rules:
                r = self.rules[i]
                assert r.event is not None
                wanted = [EVENT_KIND_IDS[r.event]]
                if r.clear_event is not None:
                    wanted.append(EVENT_KIND_IDS[r.clear_event])
                sel = np.flatnonzero(np.isin(k_s, wanted))
                if sel.size:
                    self._run_events(i, d_s[sel], t_s[sel], k_s[sel], order[sel], ev_points, out)
        if self._deadman_rules:
            parts_d = [dev] + ([ev_dev] if has_events and ev_dev is not None else [])
            parts_t = [ts] + ([ev_ts] if has_events and ev_ts is not None else [])
            self._heard(np.concatenate(parts_d), np.concatenate(parts_t), out)
        out.sort(key=lambda tr: tr.ts_ms)
        return out

    def _run_events(
        self,
        i: int,
        d: npt.NDArray[np.int32],
        t: npt.NDArray[np.int64],
        k: npt.NDArray[np.int16],
        src: npt.NDArray[np.intp],
        points: Sequence[Point | None] | None,
        out: list[Transition],
    ) -> None:
        """Every event of the rule's kind is a transition; the state keeps only order."""
        # Another type's devices have NaN thresholds. An event older than the last evaluated
        # one is late; one at the same time may be another point (two detectors in a second).
        keep = ~np.isnan(self._a[i, d]) & (t >= self.last_ts[i, d])
        if not keep.any():
            return
        d, t, k, src = d[keep], t[keep], k[keep], src[keep]
        rule = self.rules[i]
        assert rule.event is not None
        opens = int(EVENT_KIND_IDS[rule.event])
        groups = _Groups.of(d, t)
        de = d[groups.gend]
        self._remember(i, de)
        seen: set[tuple[int, int, int, str]] = set()
        for num, ts, kind, j in zip(d.tolist(), t.tolist(), k.tolist(), src.tolist(), strict=True):
            point = points[j] if points is not None else None
            pkey = "" if point is None else point.key
            if (num, ts, kind, pkey) in seen:
                continue  # the same event twice in one batch
            seen.add((num, ts, kind, pkey))
            opened = kind == opens
            if not opened and not self.active[i, num]:
                continue  # a reset with nothing of this rule alarming: nothing to clear
            out.append(
                Transition(rule, num, ts, float(kind), np.nan, opened, point if opened else None)
            )
            self.active[i, num] = opened
            self.raw[i, num] = opened
        self.last_ts[i, de] = t[groups.gend]
        self._dirty.append((i, de))

    def _decide(
        self, i: int, d: npt.NDArray[np.int32], t: npt.NDArray[np.int64], v: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
        """Decisions per reading and the value to report (the rate, for rate rules)."""
        r = self.rules[i]
        a = self._a[i, d]
        b = self._b[i, d]
        dec = np.full(d.shape, _HOLD, dtype=np.int8)
        shown = v
        if r.kind == "above":
            dec[v < b] = 0
            dec[v >= a] = 1
        elif r.kind == "below":
            dec[v >= b] = 0
            dec[v < a] = 1
        elif r.kind == "outside":
            dec[(v >= a) & (v <= b)] = 0
            dec[(v < a) | (v > b)] = 1
        elif r.kind == "event":
            assert r.event is not None
            if r.clear_event is not None:
                dec[v == EVENT_KIND_IDS[r.clear_event]] = 0
            dec[v == EVENT_KIND_IDS[r.event]] = 1
        else:  # rate
            dec, shown = self._rate(i, d, t, v, a)
        return dec, shown

    def _rate(
        self,
        i: int,
        d: npt.NDArray[np.int32],
        t: npt.NDArray[np.int64],
        v: npt.NDArray[np.float64],
        a: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
        r = self.rules[i]
        window = int(r.window_s * 1000)
        hist = self._history[i]
        # Put each device's recent history in front of its readings, then look back by search.
        hd, ht, hv = [], [], []
        for num in np.unique(d).tolist():
            h = hist.get(num)
            if h is not None:
                hd.append(np.full(h[0].size, num, np.int32))
                ht.append(h[0])
                hv.append(h[1])
        if hd:
            n_hist = sum(x.size for x in hd)
            d = np.concatenate([*hd, d])
            t = np.concatenate([*ht, t])
            v = np.concatenate([*hv, v])
            real = np.concatenate([np.zeros(n_hist, bool), np.ones(t.size - n_hist, bool)])
            order = np.lexsort((t, d))
            d, t, v, real = d[order], t[order], v[order], real[order]
            a = self._a[i, d]
        else:
            real = np.ones(d.size, bool)
        start = _group_starts(d)
        gstart = np.flatnonzero(start)
        gid = np.cumsum(start) - 1
        base = int(t.min())
        key = (d.astype(np.int64) << 42) | (t - base)
        j = np.searchsorted(key, key - window, side="left")
        j = np.maximum(j, gstart[gid])
        idx = np.arange(d.size)
        has_ref = j < idx
        dt_ms = (t - t[j]).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(has_ref, (v - v[j]) / dt_ms * _PER_MS[r.per], 0.0)
        if r.direction == "falling":
            breach = rate <= -a
        elif r.direction == "rising":
            breach = rate >= a
        else:
            breach = np.abs(rate) >= a
        dec = np.where(has_ref, breach.astype(np.int8), _HOLD).astype(np.int8)
        # Keep what the next batch needs to look back over the window.
        gend = np.r_[gstart[1:], d.size]
        for g0, g1 in zip(gstart.tolist(), gend.tolist(), strict=True):
            tl = t[g0:g1]
            keep_from = g0 + int(np.searchsorted(tl, tl[-1] - window, side="left"))
            num = int(d[g0])
            if self._journal is not None:
                self._journal.append(_HistoryUndo(i, num, hist.get(num)))
            hist[num] = (t[keep_from:g1].copy(), v[keep_from:g1].copy())
        # History readings were only context: decisions are for the batch's own readings.
        return dec[real], rate[real]

    def _run(
        self,
        i: int,
        d: npt.NDArray[np.int32],
        t: npt.NDArray[np.int64],
        v: npt.NDArray[np.float64],
        out: list[Transition],
        groups: _Groups | None = None,
    ) -> None:
        # Devices of another type have NaN thresholds; readings not newer than the state are
        # late (store-and-forward) and must not open alerts for the past; equal timestamps are
        # the same reading sent twice.
        keep = ~np.isnan(self._a[i, d]) & (t > self.last_ts[i, d])
        if groups is None:
            groups = _Groups.of(d, t)
        keep &= groups.first_of_ts
        if not keep.all():
            d, t, v = d[keep], t[keep], v[keep]
            groups = _Groups.of(d, t)
        n = d.size
        if n == 0:
            return
        rule = self.rules[i]
        dec, shown = self._decide(i, d, t, v)
        gstart, gid, gend = groups.gstart, groups.gid, groups.gend
        dg = d[gstart]
        c_raw = self.raw[i, dg]
        c_active = self.active[i, dg]
        # Raw condition: the last decisive reading in the group, else the carried state.
        last = _ffill_index(dec >= 0)
        within = last >= gstart[gid]
        raw = np.where(within, dec[np.maximum(last, 0)] == 1, c_raw[gid])
        de = d[gend]
        self._remember(i, de)
        if rule.for_ms:
            c_since = self.since[i, dg]
            prev_raw = np.empty(n, dtype=bool)
            prev_raw[1:] = raw[:-1]
            prev_raw[gstart] = c_raw
            # Start of the current breach: a reading where it began, or carried from earlier.
            began = raw & ~prev_raw
            carried = np.zeros(n, dtype=bool)
            carried[gstart] = raw[gstart] & c_raw
            since_at = np.where(began, t, 0)
            since_at[gstart] = np.where(carried[gstart], c_since, since_at[gstart])
            src = _ffill_index(began | carried)
            since = np.where(raw, since_at[np.maximum(src, 0)], 0)
            alert = raw & (t - since >= rule.for_ms)
            new_since = since[gend]
            self.since[i, de] = new_since
            since_moved = new_since != c_since
        else:
            alert = raw
            since_moved = None
        prev_alert = np.empty(n, dtype=bool)
        prev_alert[1:] = alert[:-1]
        prev_alert[gstart] = c_active
        changed = np.flatnonzero(alert != prev_alert)
        new_raw, new_active = raw[gend], alert[gend]
        self.raw[i, de] = new_raw
        self.active[i, de] = new_active
        self.last_ts[i, de] = t[gend]
        moved = (new_raw != c_raw) | (new_active != c_active)
        if since_moved is not None:
            moved |= since_moved
        # A group that opened and cleared within the batch ends where it began, but its last_ts
        # must be saved too: redelivered after a crash, those readings would fire again.
        moved[gid[changed]] = True
        if moved.any():
            self._dirty.append((i, de[moved]))
        if changed.size == 0:
            return
        thr = self._a[i, d[changed]] if rule.kind != "event" else np.full(changed.size, np.nan)
        dc, tc, vc, ac = (
            d[changed].tolist(),
            t[changed].tolist(),
            shown[changed].tolist(),
            alert[changed].tolist(),
        )
        out.extend(
            Transition(rule, dc[k], tc[k], vc[k], thr_k, ac[k])
            for k, thr_k in enumerate(thr.tolist())
        )

    # --- silence ---

    def heard(self, d: npt.NDArray[np.int32], t: npt.NDArray[np.int64]) -> list[Transition]:
        """Note messages without readings (heartbeats); returns deadman alerts they clear."""
        out: list[Transition] = []
        if self._deadman_rules:
            self._heard(d, t, out)
        return out

    def _heard(
        self, d: npt.NDArray[np.int32], t: npt.NDArray[np.int64], out: list[Transition]
    ) -> None:
        """A device that speaks again clears its deadman alerts, at its first message sent
        after the alert opened: replayed store-and-forward readings from before do not."""
        if d.size == 0:
            return
        order = np.lexsort((t, d))
        d, t = d[order], t[order]
        groups = _Groups.of(d, t)
        fd = d[groups.gstart]
        ld, lt = d[groups.gend], t[groups.gend]
        for i in self._deadman_rules:
            # last_ts of a deadman rule is when its alert opened (check_silence).
            was = self.active[i, ld] & ~np.isnan(self._a[i, ld]) & (lt > self.last_ts[i, ld])
            if was.any():
                self._remember(i, ld[was])
            opened_at = self.last_ts[i]
            for num, g0, g1 in zip(
                ld[was].tolist(),
                groups.gstart[was].tolist(),
                groups.gend[was].tolist(),
                strict=True,
            ):
                # The first message of the group sent after the alert opened.
                ts = t[g0 : g1 + 1]
                when = int(ts[np.searchsorted(ts, opened_at[num], side="right")])
                self.active[i, num] = False
                self.raw[i, num] = False
                self._dirty.append((i, np.array([num], np.int32)))
                silent = (when - int(self.last_seen[num])) / 1000
                out.append(
                    Transition(self.rules[i], num, when, silent, float(self._a[i, num]), False)
                )
        self._remember_seen(fd)
        np.maximum.at(self.last_seen, d, t)

    def check_silence(self, now_ms: int) -> list[Transition]:
        """Open deadman alerts for devices silent longer than their limit (run on a timer)."""
        out: list[Transition] = []
        for i in self._deadman_rules:
            limit_ms = self._a[i] * 1000
            seen = self.last_seen
            since = np.maximum(seen, self.silence_from_ms)
            silent = (seen > 0) & ~np.isnan(limit_ms) & ~self.active[i]
            silent &= (now_ms - since) > np.nan_to_num(limit_ms, nan=np.inf)
            cols = np.flatnonzero(silent)
            if cols.size:
                self._remember(i, cols)
            for num in cols.tolist():
                self.active[i, num] = True
                self.raw[i, num] = True
                self.since[i, num] = int(seen[num])
                self.last_ts[i, num] = now_ms  # messages sent before this do not clear it
                self._dirty.append((i, np.array([num], np.int32)))
                out.append(
                    Transition(
                        self.rules[i],
                        num,
                        now_ms,
                        (now_ms - int(seen[num])) / 1000,
                        float(self._a[i, num]),
                        True,
                    )
                )
        return out
