"""Run simulated devices over simulated time through the decoder and the default rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from devices.catalog import DeviceType
from devices.registry import Device, Registry
from ingest.decode import BatchDecoder, Decoded, Limits, RawMessage, Rejection
from rules.engine import Point, RuleEngine, Transition
from rules.loader import load_rules
from simulators.fleet import FleetSpec, Generator, Message
from simulators.signals import tank_depth_m

T0 = 1_780_272_000.0  # 2026-06-01T00:00:00Z
PREFIX = "fs/v1"


def fleet(
    size: int, seed: int = 1, interval_s: float = 10.0, depths: dict[str, float] | None = None
) -> tuple[Generator, Registry]:
    """A generator for a fleet of `size` devices and the registry that knows them (with the
    tank depths --create-fleet registers, or none: the rules' default of 3.0 m)."""
    spec = FleetSpec(size)
    ids, types = spec.ids(), spec.types()
    gen = Generator(ids, types, seed=seed, prefix=PREFIX, interval_s=interval_s, depths=depths)
    devices = []
    for num, (dev_id, typ) in enumerate(zip(ids, types, strict=True), start=1):
        attrs = {}
        if typ is DeviceType.WATER_LEVEL and depths is None:
            attrs = {"tank_depth_m": tank_depth_m(dev_id)}
        devices.append(Device(num, dev_id, "u", typ, attrs))
    return gen, Registry.of(devices)


def decode(messages: Iterable[Message], registry: Registry, now: float) -> Decoded:
    """Decode messages as ingest would at time `now` (epoch seconds)."""
    raw = [RawMessage(m.topic, m.payload) for m in messages if m.topic]
    return BatchDecoder(PREFIX, Limits()).decode(raw, registry, int(now * 1000))


@dataclass
class Run:
    """What a simulated run produced."""

    messages: list[Message] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def opened(self, device_num: int | None = None) -> set[str]:
        """Rules that opened (for one device)."""
        return {
            t.rule.id
            for t in self.transitions
            if t.opened and (device_num is None or t.device_num == device_num)
        }


def run(
    gen: Generator,
    registry: Registry,
    times: Iterable[float],
    devices: list[int] | None = None,
    per_batch: int = 25,
) -> Run:
    """Every device (or the listed ones) sends at each time; decode and evaluate the messages
    of `per_batch` times at once (as ingest batches them), collect what happened."""
    engine = RuleEngine(load_rules(), registry)
    names = {m_id: name for name, m_id in _metric_ids().items()}
    out = Run()
    idx = np.asarray(devices if devices is not None else range(len(gen.ids)), np.int64)
    steps = list(times)
    for b in range(0, len(steps), per_batch):
        chunk = np.asarray(steps[b : b + per_batch])
        dev = np.tile(idx, chunk.size)
        msgs = gen.slots(dev, np.repeat(chunk, idx.size) + dev * 0.001)
        out.messages += msgs
        d = decode(msgs, registry, float(chunk.max()) + 1.0)
        out.rejections += d.rejections
        ev = d.events
        out.transitions += engine.evaluate(
            d.dev,
            d.metric,
            d.ts,
            d.value,
            np.asarray([e.device_num for e in ev], np.int32),
            np.asarray([e.kind for e in ev], np.int16),
            np.asarray([e.ts_ms for e in ev], np.int64),
            [Point(e.loop, e.point, e.text) for e in ev],
        )
        for m_id in np.unique(d.metric).tolist():
            out.values.setdefault(names[m_id], []).extend(d.value[d.metric == m_id].tolist())
    return out


def _metric_ids() -> dict[str, int]:
    from devices.catalog import METRICS

    return {m.name: m.id for m in METRICS}
