"""The fault suite: a real `firesentry run` draining a 20,000-message backlog through kill -9,
a PostgreSQL crash and SIGTERM; each run is checked exactly (stored = PUBACKed, 0 duplicated,
each alert opened once, each notification delivered)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from firesentry.embedded import EmbeddedServices, Endpoints
from simulators.services.webhook import WebhookReceiver
from tests.e2e.conftest import SECRET
from tests.e2e.test_crash import EngineProcess
from tests.faults import drain
from tests.helpers import scalar, wait_until

pytestmark = pytest.mark.e2e
# `make faults FAULTS_N=200000` runs the same suite on a bigger backlog.
N = int(os.environ.get("FAULTS_N", "20000"))
RESULTS: dict[str, dict[str, object]] = {}


@pytest.fixture()
def seeded(db: Endpoints) -> Endpoints:
    drain.seed(db)
    return db


class Run:
    """One engine identity (client id, session) that is started, killed and restarted."""

    def __init__(
        self, db: Endpoints, prefix: str, tmp: Path, mqtt_port: int, receiver: WebhookReceiver
    ) -> None:
        self.db, self.prefix, self.tmp, self.port = db, prefix, tmp, mqtt_port
        self.client_id = f"ingest-{uuid.uuid4().hex[:8]}"
        self.env = {
            "FIRESENTRY_INGEST__BATCH_MAX": "200",
            "FIRESENTRY_NOTIFY__WEBHOOKS__SUITE__URL": receiver.url,
            "FIRESENTRY_NOTIFY__WEBHOOKS__SUITE__SECRET": SECRET,
            "FIRESENTRY_NOTIFY__POLL_INTERVAL_S": "0.2",
            "FIRESENTRY_NOTIFY__BACKOFF_BASE_S": "0.1",
            "FIRESENTRY_NOTIFY__BACKOFF_MAX_S": "0.5",
            "FIRESENTRY_NOTIFY__LEASE_S": "2",
        }
        self.starts = 0

    def start(self) -> EngineProcess:
        self.starts += 1
        eng = EngineProcess(
            self.db,
            self.prefix,
            self.client_id,
            self.tmp / f"engine{self.starts}.log",
            self.port,
            self.env,
        )
        eng.wait_subscribed()
        return eng

    def queue_backlog(self) -> set[str]:
        """Create the persistent session, leave, and have the broker queue N messages for it."""
        assert self.start().terminate() == 0
        messages, crossing = drain.backlog(self.prefix, N, int(time.time() * 1000) - 60_000)
        drain.publish_all(self.db, messages)
        return crossing


def finish(
    name: str,
    seeded: Endpoints,
    crossing: set[str],
    receiver: WebhookReceiver,
    other_alerts: int = 0,
    **extra: object,
) -> None:
    wait_until(
        lambda: (
            scalar(seeded.dsn(), "SELECT count(*) FROM notifications WHERE state <> 'sent'") == 0
        ),
        60,
        "every notification delivered",
    )
    figures = drain.check_exact(seeded, N, crossing, receiver, other_alerts)
    RESULTS[name] = {**figures, **extra}
    print(f"fault-suite {name}: {json.dumps(RESULTS[name])}")


def test_kill_9_three_times_during_a_drain(
    seeded: Endpoints, services: Endpoints, prefix: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """kill -9 of the engine three times while it drains 20,000 queued readings: every reading
    stored once, each crossing's alert opened once, every notification delivered."""
    run = Run(seeded, prefix, tmp_path, services.mqtt_port, receiver)
    crossing = run.queue_backlog()
    progress = drain.Progress(seeded)
    killed_at = []
    for threshold in (N // 5, N // 2, 4 * N // 5):
        eng = run.start()

        def reached(n: int, t: int = threshold) -> bool:
            return n >= t

        killed_at.append(progress.until(reached, 120, f"{threshold} stored"))
        eng.kill()
    assert all(k < N for k in killed_at), f"drain finished before a kill: {killed_at}"
    eng = run.start()
    try:
        progress.until(lambda n: n == N, 120, "the whole backlog stored")
        finish(
            "kill_9_x3",
            seeded,
            crossing,
            receiver,
            killed_at=killed_at,
            longest_stall_s=round(progress.longest_stall_s, 2),
        )
    finally:
        assert eng.terminate() == 0
    assert progress.longest_stall_s < drain.STALL_S


def test_postgres_crash_for_10_s_mid_drain(
    seeded: Endpoints,
    services: Endpoints,
    embedded: EmbeddedServices,
    prefix: str,
    tmp_path: Path,
    receiver: WebhookReceiver,
) -> None:
    """PostgreSQL stopped with -m immediate for 10 s mid-drain, a fire alarm published meanwhile:
    the engine waits, resumes soon after the restart and loses nothing; the alarm is posted."""
    drain.durable_commits(seeded)
    run = Run(seeded, prefix, tmp_path, services.mqtt_port, receiver)
    crossing = run.queue_backlog()
    progress = drain.Progress(seeded)
    eng = run.start()
    pg = embedded.postgres
    try:
        crashed_at = progress.until(lambda n: n >= N // 4, 120, "a quarter stored")
        res = pg._run(str(pg.bin / "pg_ctl"), "stop", "-m", "immediate", "-D", str(pg.data))
        assert res.returncode == 0, res.stderr
        fire = b'{"ts": %d, "seq": 1, "kind": "fire_alarm", "loop": 1, "point": 3}' % int(
            time.time() * 1000
        )
        drain.publish_all(seeded, [(f"{prefix}/utd-1/event", fire)])
        time.sleep(10)  # the outage itself, not a wait for a condition
        pg.start(services.db_port)
        back = time.monotonic()
        at_restart = drain.stored(seeded)
        progress.until(lambda n: n > at_restart, 60, "progress after the restart")
        resumed_s = time.monotonic() - back
        progress.until(lambda n: n == N, 120, "the whole backlog stored")
        assert receiver.wait_for(
            lambda r: any(x.body["alert"]["rule_id"] == "fire_alarm" for x in r), 60
        ), "fire alarm published during the outage never posted"
        assert scalar(seeded.dsn(), "SELECT count(*) FROM alerts WHERE rule_id = 'fire_alarm'") == 1
        finish(
            "postgres_immediate_10s",
            seeded,
            crossing,
            receiver,
            other_alerts=1,
            crashed_at=crashed_at,
            resumed_after_restart_s=round(resumed_s, 2),
        )
    finally:
        if not pg.running():
            pg.start(services.db_port)
        assert eng.terminate() == 0


def test_sigterm_mid_drain(
    seeded: Endpoints, services: Endpoints, prefix: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """SIGTERM mid-drain commits and acks what it holds and exits 0; a restart finishes the rest."""
    run = Run(seeded, prefix, tmp_path, services.mqtt_port, receiver)
    crossing = run.queue_backlog()
    progress = drain.Progress(seeded)
    eng = run.start()
    stopped_at = progress.until(lambda n: n >= N // 3, 120, "a third stored")
    assert eng.terminate() == 0
    eng = run.start()
    try:
        progress.until(lambda n: n == N, 120, "the whole backlog stored")
        finish("sigterm", seeded, crossing, receiver, stopped_at=stopped_at)
    finally:
        assert eng.terminate() == 0
    assert "redelivered readings skipped" not in (tmp_path / "engine3.log").read_text()
