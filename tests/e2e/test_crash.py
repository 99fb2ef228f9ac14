"""Ack after commit, proven with a real engine process that is killed at the worst moments."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from firesentry.embedded import Endpoints
from tests.helpers import Publisher, scalar, wait_until
from tests.netproxy import Proxy

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


class EngineProcess:
    """`firesentry run` in a subprocess, configured through FIRESENTRY_* variables."""

    def __init__(
        self,
        ep: Endpoints,
        prefix: str,
        client_id: str,
        log: Path,
        mqtt_port: int,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIRESENTRY_")}
        env.update(
            {
                "FIRESENTRY_EMBEDDED__ENABLED": "false",
                "FIRESENTRY_MQTT__HOST": ep.mqtt_host,
                "FIRESENTRY_MQTT__PORT": str(mqtt_port),
                "FIRESENTRY_MQTT__TOPIC_PREFIX": prefix,
                "FIRESENTRY_MQTT__CLIENT_ID": client_id,
                "FIRESENTRY_DATABASE__HOST": ep.db_host,
                "FIRESENTRY_DATABASE__PORT": str(ep.db_port),
                "FIRESENTRY_DATABASE__DBNAME": ep.db_name,
                "FIRESENTRY_DATABASE__USER": ep.db_user,
                "FIRESENTRY_DATABASE__PASSWORD": ep.db_password,
                "FIRESENTRY_INGEST__BATCH_MAX": "50",
                "FIRESENTRY_INGEST__BATCH_WAIT_MS": "20",
                "FIRESENTRY_LOG__FORMAT": "json",
                "FIRESENTRY_API__PORT": "0",  # never clash with a running demo's console
            }
        )
        env.update(extra_env or {})
        self.log = log
        self.handle = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firesentry.cli", "--config", str(ROOT / "config.yaml"), "run"],
            env=env,
            cwd=log.parent,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def _subscribed(self) -> bool:
        lines = [ln for ln in self.log_text().splitlines() if '"event": "subscribed"' in ln]
        return all(any(f'"session": "{s}"' in ln for ln in lines) for s in ("telemetry", "events"))

    def wait_subscribed(self) -> None:
        """Wait until both sessions (telemetry and events) have subscribed, or the engine exited."""
        wait_until(
            lambda: self._subscribed() or self.proc.poll() is not None,
            30,
            "both sessions subscribed",
        )
        assert self.proc.poll() is None, self.log_text()[-3000:]

    def stop_if_running(self) -> None:
        """Kill a still-running engine, so a failed test leaves no process behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.handle.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.handle.close()

    def terminate(self) -> int:
        """SIGTERM and the exit code; an engine that does not stop in 60 s is killed (and fails)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never leave a hung engine behind the test run
            self.proc.wait(10)
            raise
        finally:
            self.handle.close()
        return code


@pytest.fixture()
def seeded(db: Endpoints) -> Endpoints:
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u1', 'Crash Test Unit')")
        conn.execute(
            "INSERT INTO devices (id, unit_id, type) VALUES ('em-1', 'u1', 'electrical_monitor')"
        )
    return db


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    p = Publisher(services, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def publish_readings(pub: Publisher, prefix: str, n: int, start_ms: int) -> None:
    for i in range(n):
        pub.publish(
            f"{prefix}/em-1/telemetry",
            {"ts": start_ms + i, "seq": i, "metrics": {"residual_current_ma": 40.0 + i % 7}},
        )


def readings(ep: Endpoints) -> int:
    return int(scalar(ep.dsn(), "SELECT count(*) FROM telemetry"))


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


def test_kill_before_commit_loses_nothing(
    seeded: Endpoints, services: Endpoints, prefix: str, pub: Publisher, tmp_path: Path
) -> None:
    """Killed while its batch waits on the database, the engine acked nothing: all is redelivered."""
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    eng = EngineProcess(seeded, prefix, client_id, tmp_path / "engine.log", services.mqtt_port)
    eng.wait_subscribed()
    blocker = psycopg.connect(seeded.dsn())
    blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
    start = now_ms()
    publish_readings(pub, prefix, 200, start)
    wait_until(
        lambda: scalar(
            seeded.dsn(),
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND application_name = 'firesentry-ingest'",
        ),
        20,
        "engine blocked inside its write",
    )
    eng.kill()
    blocker.rollback()
    blocker.close()
    assert readings(seeded) == 0

    eng2 = EngineProcess(seeded, prefix, client_id, tmp_path / "engine2.log", services.mqtt_port)
    try:
        eng2.wait_subscribed()
        wait_until(lambda: readings(seeded) == 200, 30, "all 200 readings after restart")
        publish_readings(pub, prefix, 1, start + 10_000)
        wait_until(lambda: readings(seeded) == 201, 30, "sentinel stored")
        dup = scalar(
            seeded.dsn(),
            "SELECT count(*) FROM (SELECT device_num, metric_id, ts FROM telemetry"
            " GROUP BY 1, 2, 3 HAVING count(*) > 1) x",
        )
        assert dup == 0
    finally:
        assert eng2.terminate() == 0


def test_commit_without_ack_is_not_stored_twice(
    seeded: Endpoints, services: Endpoints, prefix: str, pub: Publisher, tmp_path: Path
) -> None:
    """Committed but the acks never reached the broker: the redelivery is recognised and skipped."""
    proxy = Proxy(services.mqtt_port)
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    eng = EngineProcess(seeded, prefix, client_id, tmp_path / "engine.log", proxy.port)
    try:
        # Both sessions must have subscribed: a SUBSCRIBE held below would never reach the broker.
        eng.wait_subscribed()
        proxy.hold_upstream.set()  # from now on the engine's PUBACKs are lost on the way
        start = now_ms()
        publish_readings(pub, prefix, 100, start)
        wait_until(lambda: readings(seeded) == 100, 30, "100 readings committed")
        wait_until(lambda: proxy.held_bytes > 0, 10, "acks sent (and held)")
        eng.kill()
        proxy.cut()
        proxy.hold_upstream.clear()

        eng2 = EngineProcess(seeded, prefix, client_id, tmp_path / "engine2.log", proxy.port)
        try:
            eng2.wait_subscribed()
            wait_until(
                lambda: "redelivered readings skipped" in eng2.log_text(),
                30,
                "the broker's redelivery reached the engine",
            )
            publish_readings(pub, prefix, 1, start + 10_000)
            wait_until(lambda: readings(seeded) == 101, 30, "sentinel stored")
            assert readings(seeded) == 101
        finally:
            assert eng2.terminate() == 0
    finally:
        eng.stop_if_running()
        proxy.close()


def test_sigterm_drains_the_current_batch(
    seeded: Endpoints, services: Endpoints, prefix: str, pub: Publisher, tmp_path: Path
) -> None:
    """SIGTERM during a blocked write waits for it to commit, acks it and exits cleanly."""
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    eng = EngineProcess(seeded, prefix, client_id, tmp_path / "engine.log", services.mqtt_port)
    eng.wait_subscribed()
    blocker = psycopg.connect(seeded.dsn())
    blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
    publish_readings(pub, prefix, 30, now_ms())
    wait_until(
        lambda: scalar(
            seeded.dsn(),
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND application_name = 'firesentry-ingest'",
        ),
        20,
        "engine blocked inside its write",
    )
    eng.proc.send_signal(signal.SIGTERM)
    blocker.rollback()
    blocker.close()
    assert eng.proc.wait(60) == 0
    eng.handle.close()
    assert readings(seeded) == 30
    assert '"ingest stopped"' in eng.log_text()

    # Everything was acked before exit: a restart receives no redelivery.
    eng2 = EngineProcess(seeded, prefix, client_id, tmp_path / "engine2.log", services.mqtt_port)
    try:
        eng2.wait_subscribed()
        publish_readings(pub, prefix, 1, now_ms() + 10_000)
        wait_until(lambda: readings(seeded) == 31, 30, "sentinel stored")
        assert "redelivered readings skipped" not in eng2.log_text()
    finally:
        assert eng2.terminate() == 0


def test_restart_mid_delivery_sends_each_notification_once(
    seeded: Endpoints, services: Endpoints, prefix: str, pub: Publisher, tmp_path: Path
) -> None:
    """Killed while the SMS gateway is still answering, the engine resends after restart with the
    same idempotency key, so the gateway can tell, and every notification arrives."""
    from simulators.services.sms import FakeSmsGateway

    with psycopg.connect(seeded.dsn(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO contacts (unit_id, name, role, phone) VALUES"
            " ('u1', 'Wang', 'fire_safety_manager', '+8613800000001')"
        )
    gw = FakeSmsGateway().start()
    gw.set_delay(3)
    env = {
        "FIRESENTRY_NOTIFY__SMS__GW__KIND": "generic",
        "FIRESENTRY_NOTIFY__SMS__GW__URL": gw.url,
        "FIRESENTRY_NOTIFY__LEASE_S": "1",
        "FIRESENTRY_NOTIFY__POLL_INTERVAL_S": "0.2",
    }
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    try:
        eng = EngineProcess(
            seeded, prefix, client_id, tmp_path / "engine.log", services.mqtt_port, env
        )
        eng.wait_subscribed()
        pub.publish(
            f"{prefix}/em-1/telemetry", {"ts": now_ms(), "metrics": {"residual_current_ma": 420.0}}
        )
        wait_until(lambda: gw.attempts >= 1, 20, "the gateway is answering the first attempt")
        eng.kill()
        assert scalar(seeded.dsn(), "SELECT state FROM notifications") == "sending"
        gw.set_delay(0)
        eng2 = EngineProcess(
            seeded, prefix, client_id, tmp_path / "engine2.log", services.mqtt_port, env
        )
        try:
            wait_until(
                lambda: scalar(seeded.dsn(), "SELECT state FROM notifications") == "sent",
                30,
                "notification sent after restart",
            )
        finally:
            assert eng2.terminate() == 0
        key = str(scalar(seeded.dsn(), "SELECT idempotency_key FROM notifications"))
        # The killed attempt may or may not have reached the gateway; every copy carries one key.
        assert set(gw.keys) == {key}
        assert scalar(seeded.dsn(), "SELECT count(*) FROM notifications") == 1
    finally:
        gw.stop()


def test_a_commit_whose_answer_is_lost_is_not_written_twice(
    seeded: Endpoints, services: Endpoints, prefix: str, pub: Publisher, tmp_path: Path
) -> None:
    """PostgreSQL commits a batch that opens and clears an alert, and the connection dies before
    the engine hears so: the engine must find out that it committed, not write it again (a
    second write re-opened the alert as 'refired' and notified everyone twice)."""
    proxy = Proxy(seeded.db_port)
    proxy.cut_reply_after(b"INSERT INTO alerts")
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    db = dataclasses.replace(seeded, db_port=proxy.port)
    env = {"FIRESENTRY_INGEST__BATCH_WAIT_MS": "1000"}  # both readings in one batch
    try:
        eng = EngineProcess(db, prefix, client_id, tmp_path / "engine.log", services.mqtt_port, env)
        try:
            eng.wait_subscribed()
            start = now_ms()
            for i, value in enumerate((420.0, 40.0)):
                pub.publish(
                    f"{prefix}/em-1/telemetry",
                    {"ts": start + i, "seq": i, "metrics": {"residual_current_ma": value}},
                )
            wait_until(proxy.tripped.is_set, 30, "the batch's COMMIT answer lost")
            publish_readings(pub, prefix, 1, start + 10_000)
            wait_until(lambda: readings(seeded) == 3, 60, "the sentinel stored after the fault")
        finally:
            assert eng.terminate() == 0
        with psycopg.connect(seeded.dsn(), autocommit=True) as conn:
            kinds = [r[0] for r in conn.execute("SELECT kind FROM alert_events ORDER BY id")]
        assert scalar(seeded.dsn(), "SELECT count(*) FROM alerts") == 1, kinds
        assert kinds.count("opened") == 1 and "refired" not in kinds, kinds
        assert scalar(seeded.dsn(), "SELECT count FROM alerts") == 1, kinds
        assert "the commit went through" in eng.log_text()
    finally:
        proxy.close()
