"""A simulated fleet: who the devices are, and the MQTT messages they send at given times.

`FleetSpec` names units and devices (one device of each type per unit) and writes them as the
registry's CSV files. `Generator` turns (device, time) slots into messages: readings from the
per-type models in simulators/signals.py, changed by the devices' fault scenarios, encoded as
the MQTT contract says. It never reads the clock and never touches the network, so a test can
run it over a simulated day and a publisher can run it against a broker.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import cast

import msgspec
import numpy as np
import numpy.typing as npt

from devices.catalog import DeviceType
from simulators.noise import F64, I64, device_seed, id_unit, uniform
from simulators.scenarios import Scenario
from simulators.signals import (
    DEFAULT_TANK_DEPTH_M,
    TransmissionDevice,
    models_for,
    tank_depth_m,
)

TYPE_ORDER = (
    DeviceType.ELECTRICAL,
    DeviceType.WATER_LEVEL,
    DeviceType.WATER_PRESSURE,
    DeviceType.UTD,
)
SUFFIX = {
    DeviceType.ELECTRICAL: "em",
    DeviceType.WATER_LEVEL: "wl",
    DeviceType.WATER_PRESSURE: "wp",
    DeviceType.UTD: "utd",
}
_DISTRICTS = ("Jinjiang", "Qingyang", "Wuhou", "Chenghua", "Jinniu", "Gaoxin", "Tianfu", "Pidu")
_CATEGORIES = ("small_venue", "high_rise", "school", "hospital", "factory", "warehouse")
# A store-and-forward batch is split to stay well under ingest's 64 KiB payload limit.
MAX_BATCH_BYTES = 48 * 1024
MAX_BATCH_READINGS = 1000


class Kind(StrEnum):
    """What a generated message is; DROP and RECONNECT are instructions to the publisher."""

    TELEMETRY = "telemetry"
    READINGS = "readings"
    EVENT = "events"
    STATUS = "status"
    MALFORMED = "malformed"
    DROP = "drop"
    RECONNECT = "reconnect"


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message of device `dev` (its index in the generator), or a link instruction."""

    dev: int
    kind: Kind
    topic: str = ""
    payload: bytes = b""
    retain: bool = False
    values: int = 0  # metric values carried (telemetry rows it should make)
    readings: int = 0  # readings in a readings[] batch


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """`size` devices in units of four (one of each type), named `<prefix>-u00001-em` etc."""

    size: int
    id_prefix: str = "sim"

    @property
    def units(self) -> int:
        """How many units hold the devices."""
        return -(-self.size // len(TYPE_ORDER))

    def _unit_id(self, k: int) -> str:
        width = max(5, len(str(self.units)))
        return f"{self.id_prefix}-u{k + 1:0{width}d}"

    def unit_of(self, device_id: str) -> str:
        """The unit id of one of the fleet's device ids."""
        return device_id.rsplit("-", 1)[0]

    def device_type(self, i: int) -> DeviceType:
        """The type of device i."""
        return TYPE_ORDER[i % len(TYPE_ORDER)]

    def device_id(self, i: int) -> str:
        """The id (and MQTT username) of device i."""
        return f"{self._unit_id(i // len(TYPE_ORDER))}-{SUFFIX[self.device_type(i)]}"

    def ids(self) -> list[str]:
        """Every device id, in order."""
        return [self.device_id(i) for i in range(self.size)]

    def types(self) -> list[DeviceType]:
        """Every device type, in order."""
        return [self.device_type(i) for i in range(self.size)]

    def write_csv(self, folder: Path, heartbeat_s: int = 60) -> tuple[Path, Path, Path]:
        """Write units.csv, devices.csv and contacts.csv for `firesentry devices import`.

        Contacts: each unit's fire-safety and property managers, and a fire supervisor per
        district. Districts are named `<prefix>-<name>` so that importing never replaces the
        contacts of a real district.
        """
        folder.mkdir(parents=True, exist_ok=True)
        units, devices, contacts = (
            folder / "units.csv",
            folder / "devices.csv",
            folder / "contacts.csv",
        )
        districts: set[str] = set()
        with units.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(("id", "name", "address", "district", "grid", "lat", "lon", "category"))
            for k in range(self.units):
                uid = self._unit_id(k)
                district = f"{self.id_prefix}-{_DISTRICTS[k % len(_DISTRICTS)]}"
                districts.add(district)
                w.writerow(
                    (
                        uid,
                        f"Simulated unit {k + 1}",
                        f"{k + 1} Simulation Road",
                        district,
                        f"{district}-G{k % 20 + 1}",
                        round(30.55 + 0.2 * id_unit(uid, "lat"), 5),
                        round(103.95 + 0.25 * id_unit(uid, "lon"), 5),
                        _CATEGORIES[k % len(_CATEGORIES)],
                    )
                )
        with devices.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(("id", "unit_id", "type", "model", "location", "attributes", "heartbeat_s"))
            for i in range(self.size):
                dev_id, typ = self.device_id(i), self.device_type(i)
                attrs = ""
                if typ is DeviceType.WATER_LEVEL:
                    attrs = f'{{"tank_depth_m": {tank_depth_m(dev_id)}}}'
                elif typ is DeviceType.WATER_PRESSURE:
                    attrs = '{"min_pressure_mpa": 0.1}'
                w.writerow(
                    (
                        dev_id,
                        self._unit_id(i // len(TYPE_ORDER)),
                        str(typ),
                        f"SIM-{SUFFIX[typ].upper()}",
                        "plant room",
                        attrs,
                        heartbeat_s,
                    )
                )
        with contacts.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(("unit_id", "district", "name", "role", "phone", "email", "locale"))
            for k in range(self.units):
                uid = self._unit_id(k)
                for j, role in enumerate(("fire_safety_manager", "property_manager")):
                    phone = f"+86 139 {k % 10000:04d} {j:02d}{k // 10000 % 100:02d}"
                    w.writerow((uid, "", f"{role} of {uid}", role, phone, "", "zh-CN"))
            for d in sorted(districts):
                w.writerow(("", d, f"Supervisor {d}", "fire_supervisor", "", "", "zh-CN"))
        return units, devices, contacts


@dataclass(frozen=True, slots=True)
class Assignment:
    """A fault scenario given to a device, starting at `onset` (epoch seconds)."""

    scenario: Scenario
    onset: float


@dataclass(slots=True)
class _DeviceState:
    seq: int = 0
    last_t: float = -math.inf
    down: bool = False  # offline scenario: connection dropped
    backlog: list[dict[str, object]] = field(default_factory=list)  # flaky scenario


def _event_body(
    ts: int, seq: int, kind: str, loop: int | None, point: int | None, text: str
) -> dict[str, object]:
    body: dict[str, object] = {"ts": ts, "seq": seq, "kind": kind}
    if loop is not None:
        body["loop"] = loop
    if point is not None:
        body["point"] = point
    if text:
        body["text"] = text
    return body


class Generator:
    """Messages of a set of devices for given (device, time) slots.

    interval_s is how often each device sends (it sizes the UTDs' routine-event odds).
    Sequence numbers, store-and-forward backlogs and link state are the only state kept.
    """

    def __init__(
        self,
        ids: Sequence[str],
        types: Sequence[DeviceType],
        *,
        seed: int = 1,
        prefix: str = "fs/v1",
        interval_s: float = 10.0,
        assignments: dict[int, Assignment] | None = None,
        depths: dict[str, float] | None = None,
    ) -> None:
        self.ids = list(ids)
        self.types = list(types)
        self.interval_s = interval_s
        self.seeds = [device_seed(seed, i) for i in self.ids]
        depth_of = depths or {}
        depths_list = [
            depth_of.get(i, tank_depth_m(i) if depths is None else DEFAULT_TANK_DEPTH_M)
            for i in self.ids
        ]
        self.models, self.row = models_for(self.types, self.seeds, depths_list)
        self._type_codes = np.asarray([TYPE_ORDER.index(t) for t in self.types], np.int64)
        self.topics = [
            (f"{prefix}/{i}/telemetry", f"{prefix}/{i}/event", f"{prefix}/{i}/status")
            for i in self.ids
        ]
        self.assignments = dict(assignments or {})
        self.state = [_DeviceState() for _ in self.ids]
        self._enc = msgspec.json.Encoder()
        self._seed_arr = np.asarray(self.seeds, np.uint64)

    # --- messages outside the schedule ---

    def hello(self, dev: int) -> Message:
        """The retained `online` status a device publishes when it connects."""
        return Message(dev, Kind.STATUS, self.topics[dev][2], b"online", retain=True)

    # --- the schedule ---

    def slots(self, devices: npt.ArrayLike, times: npt.ArrayLike) -> list[Message]:
        """The messages of `devices` (indices) at `times` (epoch seconds), in slot order."""
        dev = np.asarray(devices, np.int64)
        t = np.asarray(times, np.float64)
        ts_ms = np.floor(t * 1000.0).astype(np.int64)
        n = int(dev.size)
        per_slot: list[list[Message] | None] = [None] * n
        codes = self._type_codes[dev]
        for code in np.unique(codes).tolist():
            typ = TYPE_ORDER[code]
            pos = np.flatnonzero(codes == code)
            self._slots_of_type(typ, pos, dev[pos], t[pos], ts_ms[pos], per_slot)
        out: list[Message] = []
        for msgs in per_slot:
            if msgs:
                out.extend(msgs)
        return out

    def _slots_of_type(
        self,
        typ: DeviceType,
        pos: I64,
        dev: I64,
        t: F64,
        ts_ms: I64,
        per_slot: list[list[Message] | None],
    ) -> None:
        model = self.models[typ]
        rows = self.row[dev]
        cols = model.metrics(rows, t, ts_ms)
        faulty = [k for k, d in enumerate(dev.tolist()) if d in self.assignments]
        if faulty and cols:
            self._alter(typ, cols, np.asarray(faulty, np.int64), dev, t)
        lists = {name: col.tolist() for name, col in cols.items()}
        routine: list[tuple[str, int, int, str] | None] | None = None
        if isinstance(model, TransmissionDevice):
            routine = model.routine_event(rows, ts_ms, self.interval_s)
        names = model.names
        enc = self._enc.encode
        for k, (p, d, r, ts, tt) in enumerate(
            zip(pos.tolist(), dev.tolist(), rows.tolist(), ts_ms.tolist(), t.tolist(), strict=True)
        ):
            metrics = {name: lists[name][k] for name in names[r]}
            st = self.state[d]
            a = self.assignments.get(d)
            if a is not None:
                per_slot[p] = self._faulty_slot(
                    d, a, tt, ts, metrics, routine[k] if routine else None
                )
                continue
            st.seq += 1
            topics = self.topics[d]
            ev = routine[k] if routine else None
            if ev is not None:
                body = _event_body(ts, st.seq, ev[0], ev[1], ev[2], ev[3])
                per_slot[p] = [Message(d, Kind.EVENT, topics[1], enc(body))]
            else:
                body = {"ts": ts, "seq": st.seq, "metrics": metrics}
                per_slot[p] = [
                    Message(d, Kind.TELEMETRY, topics[0], enc(body), values=len(metrics))
                ]
            st.last_t = tt

    def _alter(self, typ: DeviceType, cols: dict[str, F64], faulty: I64, dev: I64, t: F64) -> None:
        by_scenario: dict[int, tuple[Scenario, list[int]]] = {}
        for k in faulty.tolist():
            sc = self.assignments[int(dev[k])].scenario
            if typ in sc.types:
                by_scenario.setdefault(id(sc), (sc, []))[1].append(k)
        for sc, ks in by_scenario.values():
            sel = np.asarray(ks, np.int64)
            onsets = np.asarray([self.assignments[int(dev[k])].onset for k in ks])
            sub = {name: col[sel] for name, col in cols.items()}
            sc.alter(typ, sub, t[sel] - onsets)
            for name, col in sub.items():
                cols[name][sel] = col

    def _faulty_slot(
        self,
        d: int,
        a: Assignment,
        t: float,
        ts: int,
        metrics: dict[str, float],
        routine: tuple[str, int, int, str] | None,
    ) -> list[Message]:
        st = self.state[d]
        sc = a.scenario
        tau = t - a.onset
        prev_tau = st.last_t - a.onset
        st.last_t = t
        topics = self.topics[d]
        enc = self._enc.encode
        out: list[Message] = []
        if sc.link == "offline":
            if sc.link_down(tau):
                if not st.down:
                    st.down = True
                    out.append(Message(d, Kind.DROP))
                return out  # nothing measured meanwhile is kept
            if st.down:
                st.down = False
                out.append(Message(d, Kind.RECONNECT))
                out.append(self.hello(d))
        for ev in sc.events():
            if prev_tau < ev.at_s <= tau:
                st.seq += 1
                at = math.floor((a.onset + ev.at_s) * 1000.0)
                body = _event_body(at, st.seq, ev.kind, ev.loop, ev.point, ev.text)
                out.append(Message(d, Kind.EVENT, topics[1], enc(body)))
        st.seq += 1
        if sc.link == "malformed" and tau >= 0 and sc.active(np.asarray([tau]))[0]:
            garbage = self._garbage(d, ts, st.seq)
            if garbage is not None:
                out.append(garbage)
                return out
        reading: dict[str, object] = {"ts": ts, "seq": st.seq, "metrics": metrics}
        if sc.link == "flaky":
            if sc.link_down(tau):
                st.backlog.append(reading)
                return out
            if st.backlog:
                backlog, st.backlog = [*st.backlog, reading], []
                out.extend(self._batches(d, backlog, ts))
                return out
        if routine is not None:
            body = _event_body(ts, st.seq, *routine)
            out.append(Message(d, Kind.EVENT, topics[1], enc(body)))
        else:
            out.append(Message(d, Kind.TELEMETRY, topics[0], enc(reading), values=len(metrics)))
        return out

    def _batches(self, d: int, readings: list[dict[str, object]], ts: int) -> list[Message]:
        """The backlog as readings[] batches, shuffled (reproducibly), each under the limits."""
        random.Random(self.seeds[d] ^ ts).shuffle(readings)
        out: list[Message] = []
        enc = self._enc.encode
        chunk: list[dict[str, object]] = []
        size = 16
        for r in readings:
            n = len(enc(r)) + 1
            if chunk and (size + n > MAX_BATCH_BYTES or len(chunk) >= MAX_BATCH_READINGS):
                out.append(self._batch(d, chunk))
                chunk, size = [], 16
            chunk.append(r)
            size += n
        if chunk:
            out.append(self._batch(d, chunk))
        return out

    def _batch(self, d: int, chunk: list[dict[str, object]]) -> Message:
        values = sum(len(cast(dict[str, float], r["metrics"])) for r in chunk)
        payload = self._enc.encode({"readings": chunk})
        return Message(
            d, Kind.READINGS, self.topics[d][0], payload, values=values, readings=len(chunk)
        )

    def _garbage(self, d: int, ts: int, seq: int) -> Message | None:
        """A payload the decoder must reject, about `share` of the time; else None."""
        sc = self.assignments[d].scenario
        share = float(getattr(sc, "share", 0.5))
        variants: tuple[int, ...] = getattr(sc, "variants", (0,))
        seed = self._seed_arr[d : d + 1]
        u = uniform(seed, np.asarray([ts]), 77)[0]
        if u >= share:
            return None
        pick = variants[int(uniform(seed, np.asarray([ts]), 78)[0] * len(variants))]
        topics = self.topics[d]
        enc = self._enc.encode
        topic = topics[0]
        if pick == 0:
            payload = b"\xff\xfe\x00 not json at all"
        elif pick == 1:
            payload = enc({"ts": ts, "seq": seq, "metrics": {"battery_pct": 50.0}})[:-9]
        elif pick == 2:
            payload = enc({"ts": ts, "seq": seq, "metrics": {"bogus_metric": 1.0}})
        elif pick == 3:  # seconds where milliseconds are expected
            payload = enc({"ts": ts // 1000, "seq": seq, "metrics": {"battery_pct": 50.0}})
        elif pick == 4:
            payload = enc({"ts": ts, "seq": seq, "metrics": {"battery_pct": 250.0}})
        elif pick == 5:  # a day ahead: a device whose clock is wrong
            payload = enc({"ts": ts + 86_400_000, "seq": seq, "metrics": {"battery_pct": 50.0}})
        elif pick == 6:
            payload = b'{"ts": %d, "seq": %d, "metrics": {"battery_pct": NaN}}' % (ts, seq)
        else:  # an event kind this device type does not have, or none at all
            kind = "arc_fault" if self.types[d] is not DeviceType.ELECTRICAL else "fire_alarm"
            payload = enc({"ts": ts, "seq": seq, "kind": kind})
            topic = topics[1]
        return Message(d, Kind.MALFORMED, topic, payload)
