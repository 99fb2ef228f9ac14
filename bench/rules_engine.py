"""Rule-engine microbenchmark: reading×rule evaluations per second on one core.

100,000 electrical monitors, 20 rules (thresholds with hysteresis, durations, outside bands,
a rate rule), batches of 10,000 readings; the reference (reading-at-a-time) evaluator runs
on a slice of the same stream for the ratio. Usage: python -m bench.rules_engine [--batches N]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench.common import write
from devices.catalog import METRIC_BY_NAME, DeviceType
from devices.registry import Device, Registry
from rules.engine import RuleEngine
from rules.model import RuleFile
from tests.rules.reference import Reference

MSG = {"en": "x", "zh-CN": "y"}
EM = "electrical_monitor"


def rule_file() -> RuleFile:
    """Twenty rules over the metrics of an electrical monitor."""
    rules: list[dict[str, Any]] = [
        {
            "id": "rc",
            "kind": "above",
            "metric": "residual_current_ma",
            "threshold": 300,
            "clear": 270,
        },
        {
            "id": "rc_slow",
            "kind": "above",
            "metric": "residual_current_ma",
            "threshold": 250,
            "for": 60,
        },
        {
            "id": "rc_jump",
            "kind": "rate",
            "metric": "residual_current_ma",
            "threshold": 100,
            "per": "minute",
            "window_s": 60,
            "direction": "rising",
        },
    ]
    for ch in range(1, 5):
        rules.append(
            {
                "id": f"t{ch}",
                "kind": "above",
                "metric": f"temp_c_{ch}",
                "threshold": 70,
                "clear": 65,
            }
        )
        rules.append(
            {
                "id": f"t{ch}_long",
                "kind": "above",
                "metric": f"temp_c_{ch}",
                "threshold": 60,
                "for": 300,
            }
        )
    for ph in "abc":
        rules.append(
            {
                "id": f"v{ph}",
                "kind": "outside",
                "metric": f"voltage_v_{ph}",
                "low": 198,
                "high": 242,
            }
        )
        rules.append(
            {
                "id": f"i{ph}",
                "kind": "above",
                "metric": f"current_a_{ph}",
                "threshold": {"attribute": "rated_a", "default": 63},
            }
        )
    rules.append(
        {"id": "batt", "kind": "below", "metric": "battery_pct", "threshold": 20, "clear": 25}
    )
    rules.append({"id": "batt_crit", "kind": "below", "metric": "battery_pct", "threshold": 10})
    rules.append(
        {"id": "rssi", "kind": "below", "metric": "rssi_dbm", "threshold": -100, "for": 600}
    )
    assert len(rules) == 20
    return RuleFile.model_validate(
        {"rules": [{"device_type": EM, "severity": "major", "message": MSG, **r} for r in rules]}
    )


def stream(n_devices: int, batch: int, batches: int, seed: int = 1) -> list[tuple[Any, ...]]:
    """Batches of (dev, metric, ts, value) with values near the thresholds."""
    rng = np.random.default_rng(seed)
    metrics = [m for m in METRIC_BY_NAME.values() if DeviceType.ELECTRICAL in m.device_types]
    ids = np.array([m.id for m in metrics], np.int16)
    centre = {
        "residual_current_ma": 280,
        "battery_pct": 30,
        "voltage_v_a": 220,
        "voltage_v_b": 220,
        "voltage_v_c": 220,
        "rssi_dbm": -90,
    }
    centres = np.array(
        [centre.get(m.name, 65 if m.name.startswith("temp") else 55) for m in metrics], float
    )
    out = []
    t0 = 1_767_225_600_000
    for b in range(batches):
        dev = rng.integers(1, n_devices + 1, batch).astype(np.int32)
        k = rng.integers(0, len(ids), batch)
        ts = (t0 + b * 1000 + rng.integers(0, 1000, batch)).astype(np.int64)
        val = centres[k] * rng.normal(1.0, 0.08, batch)
        out.append((dev, ids[k], ts, val))
    return out


def main() -> None:
    """Run the benchmark and write bench/results/rules-engine-*.json."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--reference-batches", type=int, default=3)
    args = ap.parse_args()
    rf = rule_file()
    reg = Registry.of(
        [Device(n, f"em-{n}", "u", DeviceType.ELECTRICAL) for n in range(1, args.devices + 1)]
    )
    batches = stream(args.devices, args.batch, args.batches)

    engine = RuleEngine(rf, reg)
    engine.evaluate(*batches[0])  # warm-up: numpy and per-rule set-up
    transitions = 0
    t = time.perf_counter()
    for b in batches[1:]:
        transitions += len(engine.evaluate(*b))
    elapsed = time.perf_counter() - t
    readings = args.batch * (len(batches) - 1)
    evals = readings * len(rf.rules)

    ref = Reference(rf, reg)
    ref_batches = batches[: args.reference_batches]
    t = time.perf_counter()
    for dev, met, ts, val in ref_batches:
        ref.feed(list(zip(dev.tolist(), met.tolist(), ts.tolist(), val.tolist(), strict=True)))
    ref_elapsed = time.perf_counter() - t
    ref_evals = args.batch * len(ref_batches) * len(rf.rules)

    rate = evals / elapsed
    ref_rate = ref_evals / ref_elapsed
    result = {
        "devices": args.devices,
        "rules": len(rf.rules),
        "batch": args.batch,
        "batches_timed": len(batches) - 1,
        "readings": readings,
        "transitions": transitions,
        "seconds": round(elapsed, 3),
        "reading_rule_evals_per_s": round(rate),
        "readings_per_s": round(readings / elapsed),
        "ms_per_batch": round(elapsed / (len(batches) - 1) * 1000, 2),
        "reference_reading_rule_evals_per_s": round(ref_rate),
        "ratio_to_reference": round(rate / ref_rate, 1),
        "target_reading_rule_evals_per_s": 10_000_000,
    }
    path = write("rules-engine", result)
    print(
        f"rule engine: {rate / 1e6:.1f} M reading×rule evaluations/s "
        f"({readings / elapsed:,.0f} readings/s, {result['ms_per_batch']} ms per "
        f"{args.batch}-reading batch, {transitions} transitions)"
    )
    print(f"reference:   {ref_rate / 1e6:.2f} M/s → vectorised is {rate / ref_rate:.0f}× faster")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
