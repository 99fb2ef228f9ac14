"""Decode+validate microbenchmark: readings per second through ingest's batch decoder, one core.

Batches of 2,000 MQTT messages from 10,000 registered devices: single-reading telemetry of an
electrical monitor (5 metrics, ~135-byte JSON) and store-and-forward messages of 20 readings.
The baseline is the obvious per-message code: json.loads and a dict walk with the same checks.
Usage: python -m bench.decode
"""

from __future__ import annotations

import json
import math
import time

import msgspec

from bench.common import write
from devices.catalog import METRIC_BY_NAME, DeviceType
from devices.registry import Device, Registry
from ingest.decode import BatchDecoder, Limits, RawMessage

N_DEVICES = 10_000
BATCH = 2_000


def messages(now_ms: int, per_message: int, count: int) -> list[RawMessage]:
    """Telemetry messages with `per_message` readings each, round-robin over the fleet."""
    out = []
    for k in range(count):
        dev = f"em-{k % N_DEVICES + 1}"
        metrics = {
            "residual_current_ma": 41.5 + k % 9,
            "temp_c_1": 38.2,
            "voltage_v_a": 221.4,
            "current_a_a": 37.8,
            "battery_pct": 96.0,
        }
        if per_message == 1:
            body: dict[str, object] = {"ts": now_ms - k, "seq": k, "metrics": metrics}
        else:
            body = {
                "readings": [
                    {"ts": now_ms - k * 1000 - j, "seq": j, "metrics": metrics}
                    for j in range(per_message)
                ]
            }
        out.append(RawMessage(f"fs/v1/{dev}/telemetry", msgspec.json.encode(body), k))
    return out


def naive(batch: list[RawMessage], registry: Registry, now_ms: int) -> int:
    """The obvious per-message decoder, for the ratio."""
    n = 0
    for m in batch:
        device = registry.by_id[m.topic.split("/")[2]]
        body = json.loads(m.payload)
        readings = body.get("readings") or [body]
        for r in readings:
            ts = int(r["ts"])
            if ts > now_ms + 300_000:
                raise ValueError("future")
            for name, value in r["metrics"].items():
                spec = METRIC_BY_NAME[name]
                if device.type not in spec.device_types or not math.isfinite(value):
                    raise ValueError(name)
                if not spec.low <= value <= spec.high:
                    raise ValueError(name)
                n += 1
    return n


def measure(fn: object, batches: list[list[RawMessage]], *args: object) -> tuple[float, int]:
    """Run fn over the batches; return seconds and readings."""
    total = 0
    t = time.perf_counter()
    for b in batches:
        r = fn(b, *args)  # type: ignore[operator]
        total += r if isinstance(r, int) else r.readings
    return time.perf_counter() - t, total


def main() -> None:
    """Run the benchmark and write bench/results/decode-*.json."""
    reg = Registry.of(
        [Device(n, f"em-{n}", "u", DeviceType.ELECTRICAL) for n in range(1, N_DEVICES + 1)]
    )
    now = int(time.time() * 1000)
    dec = BatchDecoder("fs/v1", Limits())
    result: dict[str, object] = {"devices": N_DEVICES, "batch_messages": BATCH}
    for label, per, count in (("single", 1, 60_000), ("batched20", 20, 6_000)):
        msgs = messages(now, per, count)
        batches = [msgs[k : k + BATCH] for k in range(0, len(msgs), BATCH)]
        dec.decode(batches[0], reg, now)
        secs, readings = measure(dec.decode, batches, reg, now)
        n_secs, n_readings = measure(naive, batches, reg, now)
        assert readings == n_readings == count * per * 5
        r: dict[str, float] = {
            "messages_per_s": round(count / secs),
            "readings_per_s": round(readings / secs),
            "naive_readings_per_s": round(n_readings / n_secs),
            "ratio_to_naive": round(n_secs / secs, 2),
            "bytes_per_message": round(sum(len(m.payload) for m in msgs) / len(msgs)),
        }
        result[label] = r
        print(
            f"{label:10} {r['messages_per_s']:>9,} msgs/s  {r['readings_per_s']:>10,} readings/s  "
            f"(naive {r['naive_readings_per_s']:,}/s, ×{r['ratio_to_naive']})"
        )
    result["target_readings_per_s"] = 100_000
    print(f"written to {write('decode', result)}")


if __name__ == "__main__":
    main()
