"""Shared test helpers: waiting on conditions with a deadline, publishing, settings for a test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from firesentry.config import Settings
from firesentry.embedded import Endpoints

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll predicate until it returns something truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


def scalar(dsn: str, query: str, params: Any = None) -> Any:
    """Run a query and return the first column of the first row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]


class Publisher:
    """A device-side MQTT client that publishes QoS 1 and waits for the broker's acks."""

    def __init__(self, ep: Endpoints, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.connect(ep.mqtt_host, ep.mqtt_port)
        self.client.loop_start()

    def publish(self, topic: str, body: dict[str, Any] | bytes) -> None:
        """Publish one message and wait until the broker has it."""
        payload = body if isinstance(body, bytes) else msgspec.json.encode(body)
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def engine_settings(prefix: str, client_id: str, **sections: dict[str, Any]) -> Settings:
    """Settings for an engine under test: no embedded services, fast batches and retries."""
    base: dict[str, Any] = {
        "embedded": {"enabled": False},
        "mqtt": {"topic_prefix": prefix, "client_id": client_id},
        "ingest": {"batch_wait_ms": 20, "registry_refresh_s": 0.5},
        "notify": {"poll_interval_s": 0.2, "backoff_base_s": 0.05, "backoff_max_s": 0.2},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return Settings(**base)


@contextmanager
def own_services_dir(prefix: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder for a .firesentry/ of its own, the environment pointing at it; stopped after."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRESENTRY_")}
    env["FIRESENTRY_CONFIG"] = str(Path(__file__).resolve().parents[1] / "config.yaml")
    env["FIRESENTRY_EMBEDDED__DIR"] = str(d / ".firesentry")
    try:
        yield d, env
    finally:
        subprocess.run(
            [sys.executable, "-m", "firesentry.cli", "down", "--purge"],
            env=env,
            cwd=d,
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(d, ignore_errors=True)
