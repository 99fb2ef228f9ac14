"""A small scripted fleet for the demo: normal readings, then one breach per device type."""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.catalog import DeviceType


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A simulated device: its id, type and (for the scripted faults) when it misbehaves."""

    id: str
    type: DeviceType
    fault_at_s: float | None = None
    recover_at_s: float | None = None


def _normal(dev: SimDevice, t: float, rng: random.Random) -> dict[str, float]:
    if dev.type is DeviceType.ELECTRICAL:
        load = 40 + 20 * math.sin(t / 30)
        return {
            "residual_current_ma": round(45 + rng.uniform(-5, 5), 1),
            "temp_c_1": round(30 + load * 0.2 + rng.uniform(-0.5, 0.5), 1),
            "voltage_v_a": round(220 + rng.uniform(-3, 3), 1),
            "current_a_a": round(load, 1),
            "battery_pct": 96.0,
        }
    if dev.type is DeviceType.WATER_LEVEL:
        return {"level_m": round(2.95 + rng.uniform(-0.02, 0.02), 3), "battery_pct": 88.0}
    if dev.type is DeviceType.WATER_PRESSURE:
        return {"pressure_mpa": round(0.35 + rng.uniform(-0.01, 0.01), 3), "battery_pct": 90.0}
    return {"rssi_dbm": -67.0}


def _faulty(dev: SimDevice, t: float, rng: random.Random) -> dict[str, float]:
    m = _normal(dev, t, rng)
    if dev.type is DeviceType.ELECTRICAL:
        m["residual_current_ma"] = round(360 + rng.uniform(-10, 10), 1)
    elif dev.type is DeviceType.WATER_LEVEL:
        m["level_m"] = 1.2
    elif dev.type is DeviceType.WATER_PRESSURE:
        m["pressure_mpa"] = 0.04
    return m


class DemoFleet:
    """Publishes every `interval_s` for each device until stopped, one MQTT client per device."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: list[SimDevice],
        interval_s: float = 2.0,
        prefix: str = "fs/v1",
        passwords: dict[str, str] | None = None,
    ) -> None:
        self.devices = devices
        self.interval_s = interval_s
        self.prefix = prefix
        self.published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # One client each, as real devices: with broker auth the username must be the device id,
        # and the ACL lets it write only below its own id.
        self.clients: dict[str, mqtt.Client] = {}
        for dev in devices:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"firesentry-demo-{dev.id}",
                protocol=mqtt.MQTTv5,
            )
            if passwords is not None:
                client.username_pw_set(dev.id, passwords[dev.id])
            client.connect(host, port)
            client.loop_start()
            self.clients[dev.id] = client

    def _tick(self, t: float, seq: int, rng: random.Random, fired: set[str]) -> None:
        now_ms = int(time.time() * 1000)
        for dev in self.devices:
            faulty = (
                dev.fault_at_s is not None
                and t >= dev.fault_at_s
                and not (dev.recover_at_s is not None and t >= dev.recover_at_s)
            )
            if dev.type is DeviceType.UTD:
                if faulty and dev.id not in fired:
                    fired.add(dev.id)
                    self._publish(
                        dev.id,
                        "event",
                        {
                            "ts": now_ms,
                            "seq": seq,
                            "kind": "fire_alarm",
                            "loop": 1,
                            "point": 17,
                            "text": "smoke detector",
                        },
                    )
                elif not faulty and dev.id in fired:
                    fired.discard(dev.id)
                    self._publish(dev.id, "event", {"ts": now_ms, "seq": seq, "kind": "reset"})
            metrics = _faulty(dev, t, rng) if faulty else _normal(dev, t, rng)
            self._publish(dev.id, "telemetry", {"ts": now_ms, "seq": seq, "metrics": metrics})

    def _publish(self, device_id: str, kind: str, body: dict[str, object]) -> None:
        topic = f"{self.prefix}/{device_id}/{kind}"
        self.clients[device_id].publish(topic, msgspec.json.encode(body), qos=1)
        self.published += 1

    def _run(self) -> None:
        rng = random.Random(7)
        start = time.monotonic()
        seq = 0
        fired: set[str] = set()
        while not self._stop.is_set():
            seq += 1
            self._tick(time.monotonic() - start, seq, rng, fired)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start publishing in a background thread."""
        self._thread = threading.Thread(target=self._run, name="demo-fleet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()
