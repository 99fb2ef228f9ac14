"""A small scripted fleet for the demo: normal readings, then one breach per device type.

The readings come from the per-type simulators (simulators/signals.py) and the breaches from
the named scenarios (simulators/scenarios.py), set to step at once so that the demo shows an
alert of each type within seconds: leakage_rising (electrical monitor), tank_draining (tank
level), pipe_burst (main pressure), and a false fire alarm from a named detector on a panel
loop (UTD).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.catalog import DeviceType
from simulators.fleet import Assignment, Generator, Kind
from simulators.scenarios import (
    FalseFireAlarm,
    LeakageRising,
    PipeBurst,
    Scenario,
    ScheduledEvent,
    TankDraining,
)
from simulators.signals import DEFAULT_TANK_DEPTH_M

DEMO_SEED = 7


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A simulated device: its id, type and (for the scripted faults) when it misbehaves."""

    id: str
    type: DeviceType
    fault_at_s: float | None = None
    recover_at_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class PanelFireAlarm(FalseFireAlarm):
    """The demo's fire alarm: one detector of the panel, named as the panel names it, alarms;
    the panel is reset after hold_s."""

    loop: int = 2
    point: int = 31
    text: str = "3F东侧走廊感烟探测器"

    def events(self) -> tuple[ScheduledEvent, ...]:
        """fire_alarm of the point at onset, the panel's reset at hold_s."""
        return (
            ScheduledEvent(0.0, "fire_alarm", self.text, loop=self.loop, point=self.point),
            ScheduledEvent(self.hold_s, "reset", "控制器复位"),
        )


def demo_scenario(dev: SimDevice) -> Scenario | None:
    """The scenario the demo gives a device with a fault time: a step, over at recover_at_s."""
    if dev.fault_at_s is None:
        return None
    end = None if dev.recover_at_s is None else dev.recover_at_s - dev.fault_at_s
    if dev.type is DeviceType.ELECTRICAL:
        return LeakageRising(ramp_s=0.0, peak_ma=365.0, end_s=end)
    if dev.type is DeviceType.WATER_LEVEL:
        return TankDraining(drain_s=0.0, floor_frac=0.4, end_s=end)
    if dev.type is DeviceType.WATER_PRESSURE:
        return PipeBurst(tau_s=0.0, floor_mpa=0.04, end_s=end)
    return PanelFireAlarm(hold_s=end if end is not None else 1e9)


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
        tank_depth_m: float = DEFAULT_TANK_DEPTH_M,
    ) -> None:
        self.devices = devices
        self.interval_s = interval_s
        self.prefix = prefix
        self.published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.generator = Generator(
            [d.id for d in devices],
            [d.type for d in devices],
            seed=DEMO_SEED,
            prefix=prefix,
            interval_s=interval_s,
            depths={d.id: tank_depth_m for d in devices if d.type is DeviceType.WATER_LEVEL},
        )
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

    def _tick(self) -> None:
        n = len(self.devices)
        for m in self.generator.slots(np.arange(n), np.full(n, time.time())):
            if m.kind in (Kind.DROP, Kind.RECONNECT):
                continue  # the demo's scenarios keep their links
            client = self.clients[self.devices[m.dev].id]
            client.publish(m.topic, m.payload, qos=1, retain=m.retain)
            self.published += 1

    def _run(self) -> None:
        start = time.time()
        self.generator.assignments = {
            k: Assignment(sc, start + dev.fault_at_s)
            for k, dev in enumerate(self.devices)
            if dev.fault_at_s is not None and (sc := demo_scenario(dev)) is not None
        }
        while not self._stop.is_set():
            self._tick()
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
