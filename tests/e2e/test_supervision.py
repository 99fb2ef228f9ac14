"""Supervision with real processes: a dead worker exits 70, /readyz tells the truth, the outbox
comes back quickly after a database outage.

How each failure is provoked, without mocking firesentry's code:

- the outbox: the database refuses what the outbox needs (its table is renamed away), so every
  round fails with a non-connection error until the worker gives up;
- the ingest batch thread: no external fault can end it (it retries every database error and
  logs and retries every unexpected one), so the test sets the test-only hook
  FIRESENTRY_FAULT_INJECT=ingest_thread, read in firesentry/app.py only and off by default;
- a database outage: the engine reaches PostgreSQL through tests/netproxy.Proxy, which is
  switched to a port that closes every connection at once, as a stopped server would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.common import children_of
from devices.catalog import DeviceType
from firesentry.embedded import Endpoints
from simulators.services.webhook import WebhookReceiver
from store import alert_plan, channels
from store import tokens as store_tokens
from tests.e2e.test_crash import EngineProcess
from tests.helpers import Publisher, scalar, wait_until
from tests.netproxy import Proxy

pytestmark = pytest.mark.e2e
SECRET = "supervision-secret"
EX_SOFTWARE = 70
# The target: notifications flow again within 2 s of the database being back. The
# tolerance absorbs a loaded 2-core machine; the old code slept min(5, 2 × poll) = 5 s here.
RECOVERY_S = 2.0
TOLERANCE_S = 1.5


class Refuser:
    """A port that takes each connection and closes it at once: PostgreSQL while it is down."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.refused += 1
            conn.close()

    def close(self) -> None:
        """Stop listening (shutdown wakes the blocked accept)."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


class DatabaseLink:
    """The road from firesentry to PostgreSQL, which the test can close and open again."""

    def __init__(self, db_port: int) -> None:
        self.db_port = db_port
        self.proxy = Proxy(db_port)
        self.refuser = Refuser()
        self.port = self.proxy.port

    def down(self) -> None:
        """Drop every connection; new ones are closed at once until up()."""
        self.proxy.upstream_port = self.refuser.port
        self.proxy.cut()

    def up(self) -> None:
        """Let new connections through to PostgreSQL again."""
        self.proxy.upstream_port = self.db_port

    def close(self) -> None:
        """Stop both ends."""
        self.proxy.close()
        self.refuser.close()


class ApiProcess:
    """`firesentry api` on its own (as beside engines on other hosts), its log in a file."""

    def __init__(self, ep: Endpoints, log: Path, extra_env: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIRESENTRY_")}
        env.update(
            {
                "FIRESENTRY_EMBEDDED__ENABLED": "false",
                "FIRESENTRY_MQTT__HOST": ep.mqtt_host,
                "FIRESENTRY_MQTT__PORT": str(ep.mqtt_port),
                "FIRESENTRY_DATABASE__HOST": ep.db_host,
                "FIRESENTRY_DATABASE__PORT": str(ep.db_port),
                "FIRESENTRY_DATABASE__DBNAME": ep.db_name,
                "FIRESENTRY_DATABASE__USER": ep.db_user,
                "FIRESENTRY_DATABASE__PASSWORD": ep.db_password,
                "FIRESENTRY_API__PORT": "0",
                "FIRESENTRY_LOG__FORMAT": "json",
                **extra_env,
            }
        )
        self.handle = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firesentry.cli", "api"],
            env=env,
            cwd=log.parent,
            stdout=subprocess.PIPE,
            stderr=self.handle,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"on (http://\S+)/ ", line)
        assert m, line + log.read_text(errors="replace")[-2000:]
        self.url = m.group(1)
        # /readyz gives its reasons only to a token holder.
        with psycopg.connect(ep.dsn(), autocommit=True) as conn:
            _, self.token = store_tokens.create_token(conn, "supervision test", "analyst")

    def readyz(self) -> tuple[int, dict[str, Any]]:
        """GET /readyz (with a token, for the details); it must answer within 5 s."""
        req = urllib.request.Request(
            self.url + "/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self) -> int:
        """SIGTERM and the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.handle.close()
        return code


@pytest.fixture()
def link(services: Endpoints) -> Iterator[DatabaseLink]:
    """A switchable road to the test PostgreSQL."""
    road = DatabaseLink(services.db_port)
    yield road
    road.close()


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    """A device-side publisher."""
    p = Publisher(services, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def readyz_until(
    api: ApiProcess, status: int, check: Callable[[dict[str, str]], bool], what: str, timeout: float
) -> dict[str, Any]:
    """Poll /readyz until it answers `status` with checks that satisfy `check`; the body."""
    found: dict[str, Any] = {}

    def hit() -> bool:
        code, body = api.readyz()
        found.update(body)
        return code == status and check(body["checks"])

    wait_until(hit, timeout, what)
    return found


def exit_code(eng: EngineProcess, timeout: float) -> int:
    """Wait for the engine to exit by itself; its exit code."""
    try:
        code = eng.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        eng.kill()
        raise AssertionError("the engine did not exit:\n" + eng.log_text()[-3000:]) from None
    eng.handle.close()
    return code


def log_events(eng: EngineProcess) -> list[dict[str, Any]]:
    """The engine's JSON log lines (other lines skipped)."""
    out = []
    for line in eng.log_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def death_of(eng: EngineProcess) -> dict[str, Any]:
    """The watchdog's one log line about the worker that died."""
    deaths = [e for e in log_events(eng) if e.get("event", "").startswith("worker died")]
    assert len(deaths) == 1, eng.log_text()[-3000:]
    return deaths[0]


def test_ingest_thread_death_exits_70_with_its_traceback(
    db: Endpoints,
    services: Endpoints,
    prefix: str,
    pub: Publisher,
    fleet: dict[str, DeviceType],
    tmp_path: Path,
) -> None:
    """The ingest batch thread dying (fault hook) stops the engine with exit 70 and a traceback."""
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    eng = EngineProcess(
        db,
        prefix,
        client_id,
        tmp_path / "engine.log",
        services.mqtt_port,
        {"FIRESENTRY_FAULT_INJECT": "ingest_thread"},
    )
    eng.wait_subscribed()
    pub.publish(
        f"{prefix}/em-1/telemetry",
        {"ts": int(time.time() * 1000), "metrics": {"residual_current_ma": 40.0}},
    )
    assert exit_code(eng, 60) == EX_SOFTWARE
    death = death_of(eng)
    assert death["worker"] == "ingest" and death["exit_code"] == EX_SOFTWARE
    assert "Traceback" in death["exception"] and "InjectedFault" in death["exception"]
    assert '"ingest stopped"' in eng.log_text()  # the others were stopped, not abandoned
    # Its last report stays behind, naming the dead worker, for /readyz until a restart.
    assert (
        scalar(
            db.dsn(), "SELECT ingest_alive FROM engine_health WHERE client_id = %s", (client_id,)
        )
        is False
    )


def test_outbox_that_keeps_failing_exits_70(
    db: Endpoints, services: Endpoints, prefix: str, tmp_path: Path
) -> None:
    """Outbox rounds failing on a non-connection error are retried, then the engine exits 70."""
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    eng = EngineProcess(
        db,
        prefix,
        client_id,
        tmp_path / "engine.log",
        services.mqtt_port,
        {"FIRESENTRY_NOTIFY__DEAD_AFTER_S": "3", "FIRESENTRY_NOTIFY__POLL_INTERVAL_S": "0.2"},
    )
    eng.wait_subscribed()
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("ALTER TABLE notifications RENAME TO notifications_moved_away")
    assert exit_code(eng, 60) == EX_SOFTWARE
    events = log_events(eng)
    retried = [e for e in events if e.get("event") == "outbox round failed unexpectedly; retrying"]
    assert retried and "UndefinedTable" in retried[0]["exception"]
    death = death_of(eng)
    assert death["worker"] == "outbox"
    assert "OutboxFailing" in death["exception"] and "UndefinedTable" in death["exception"]


def outbox_process_of(eng: EngineProcess) -> int:
    """The pid of the engine's outbox process (a child process; from /proc)."""

    def find() -> int | None:
        for pid in children_of(eng.proc.pid):
            with contextlib.suppress(OSError):
                if b"firesentry.outbox_process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None

    # "engine running" comes once the outbox process has built its worker.
    wait_until(lambda: '"engine running"' in eng.log_text(), 30, "the outbox process ready")
    pid = find()
    assert pid is not None
    return pid


def gone(pid: int) -> bool:
    """Whether pid has ended (a zombie nobody reaped counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_killed_outbox_process_makes_the_engine_exit_70(
    db: Endpoints, services: Endpoints, prefix: str, tmp_path: Path
) -> None:
    """The outbox runs in a process of its own: when that process is killed, the watchdog
    stops the engine with 70 (so the service manager restarts both), naming the signal."""
    eng = EngineProcess(
        db, prefix, f"ingest-{uuid.uuid4().hex[:8]}", tmp_path / "engine.log", services.mqtt_port
    )
    eng.wait_subscribed()
    os.kill(outbox_process_of(eng), signal.SIGKILL)
    assert exit_code(eng, 60) == EX_SOFTWARE
    death = death_of(eng)
    assert death["worker"] == "outbox"
    assert "killed by signal 9" in death["error"], death


def test_the_outbox_process_ends_with_the_engine_killed_or_stopped(
    db: Endpoints, services: Endpoints, prefix: str, tmp_path: Path
) -> None:
    """kill -9 of the engine cannot take its child along: the outbox notices its parent is gone
    and stops within seconds, rather than sending on beside the restarted engine's. A SIGTERM
    stops it too, before the engine exits 0."""
    eng = EngineProcess(
        db, prefix, f"ingest-{uuid.uuid4().hex[:8]}", tmp_path / "e1.log", services.mqtt_port
    )
    eng.wait_subscribed()
    outbox = outbox_process_of(eng)
    eng.kill()
    wait_until(lambda: gone(outbox), 10, "the orphaned outbox process stopped")
    said = [e.get("event") for e in log_events(eng)]
    assert "the engine is gone; the outbox stops" in said, eng.log_text()[-2000:]

    eng = EngineProcess(
        db, prefix, f"ingest-{uuid.uuid4().hex[:8]}", tmp_path / "e2.log", services.mqtt_port
    )
    eng.wait_subscribed()
    outbox = outbox_process_of(eng)
    assert eng.terminate() == 0, eng.log_text()[-3000:]
    assert gone(outbox), "the engine exited and left its outbox process running"


def test_readyz_follows_a_killed_engine_and_a_lost_database(
    db: Endpoints,
    services: Endpoints,
    prefix: str,
    link: DatabaseLink,
    fleet: dict[str, DeviceType],
    tmp_path: Path,
) -> None:
    """/readyz of a separate API process goes 503 naming the engine (kill -9) or the database
    (unreachable), and 200 again once the engine is back and the database reachable."""
    via = dataclasses.replace(db, db_port=link.port)
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    api = ApiProcess(via, tmp_path / "api.log", {"FIRESENTRY_API__READY_STALE_AFTER_S": "5"})
    engine_env = {"FIRESENTRY_API__ENABLED": "false"}
    eng = EngineProcess(via, prefix, client_id, tmp_path / "e1.log", services.mqtt_port, engine_env)
    eng2: EngineProcess | None = None
    try:
        eng.wait_subscribed()
        body = readyz_until(api, 200, lambda c: True, "ready with the engine running", 30)
        assert [e["client_id"] for e in body["engines"]] == [client_id]

        eng.kill()
        body = readyz_until(
            api, 503, lambda c: "stale" in c["engine"], "the killed engine's report is stale", 30
        )
        assert body["checks"]["engine"].startswith(f"{client_id}: stale (last report")
        assert body["checks"]["database"] == "ok"

        eng2 = EngineProcess(
            via, prefix, client_id, tmp_path / "e2.log", services.mqtt_port, engine_env
        )
        eng2.wait_subscribed()
        readyz_until(api, 200, lambda c: True, "ready again after the restart", 30)

        link.down()
        body = readyz_until(
            api, 503, lambda c: c["database"] != "ok", "the database is unreachable", 30
        )
        assert body["checks"]["engine"] == "unknown: the database did not answer"
        # Long enough that the engine's last report is stale: ready again needs a new one.
        wait_until(
            lambda: scalar(
                db.dsn(), "SELECT now() - updated_at > interval '6 seconds' FROM engine_health"
            ),
            30,
            "the engine's report aged during the outage",
        )

        link.up()
        readyz_until(api, 200, lambda c: True, "ready again with the database back", 60)
        assert eng2.terminate() == 0
        eng2 = None
        # A deliberate stop deregisters the engine: the API alone is not ready.
        _, body = api.readyz()
        assert body["checks"]["engine"] == "none registered"
    finally:
        for e in (eng, eng2):
            if e is not None and e.proc.poll() is None:
                e.kill()
        assert api.stop() == 0


def test_outbox_delivers_within_2s_of_the_database_coming_back(
    db: Endpoints, services: Endpoints, prefix: str, link: DatabaseLink, tmp_path: Path
) -> None:
    """A notification queued during an outage reaches its webhook within 2 s of the database
    becoming reachable; the outage is logged once when it starts and once when it ends."""
    receiver = WebhookReceiver(SECRET.encode()).start()
    via = dataclasses.replace(db, db_port=link.port)
    eng = EngineProcess(
        via,
        prefix,
        f"ingest-{uuid.uuid4().hex[:8]}",
        tmp_path / "engine.log",
        services.mqtt_port,
        {
            "FIRESENTRY_API__ENABLED": "false",
            "FIRESENTRY_NOTIFY__WEBHOOKS__HOOK__URL": receiver.url,
            "FIRESENTRY_NOTIFY__WEBHOOKS__HOOK__SECRET": SECRET,
            # Long polls: the old reconnect slept min(5, 2 × poll) = 5 s.
            "FIRESENTRY_NOTIFY__POLL_INTERVAL_S": "30",
        },
    )

    def queue(n: int) -> None:
        # Straight to PostgreSQL, not through the link the engine uses.
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            alert_plan.enqueue(conn, None, "webhook", "hook", {"n": n})
            channels.notify_outbox(conn)

    try:
        eng.wait_subscribed()
        queue(1)
        assert receiver.wait_for(lambda got: len(got) == 1, 30), "first notification"

        link.down()
        wait_until(
            lambda: "outbox database unavailable; probing" in eng.log_text(),
            20,
            "the outbox noticed the outage",
        )
        queue(2)
        refused = link.refuser.refused
        # Let the outage last a few probes, so that recovery cannot be a lucky first attempt.
        wait_until(lambda: link.refuser.refused >= refused + 4, 20, "probes during the outage")
        link.up()
        assert receiver.wait_for(lambda got: len(got) == 2, RECOVERY_S + TOLERANCE_S), (
            "no delivery within 2 s of the database coming back:\n" + eng.log_text()[-3000:]
        )
        assert receiver.received[1].body["n"] == 2 and receiver.received[1].signature_ok
        events = [
            e["event"]
            for e in log_events(eng)
            if str(e.get("event", "")).startswith("outbox database")
        ]
        assert events == ["outbox database unavailable; probing", "outbox database reachable again"]
        (back,) = [
            e for e in log_events(eng) if e.get("event") == "outbox database reachable again"
        ]
        assert back["down_for_s"] > 0
    finally:
        if eng.proc.poll() is None:
            assert eng.terminate() == 0
        receiver.stop()
