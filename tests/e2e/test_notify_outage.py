"""Notifications that outlast a receiver's outage: refused connections, then HTTP 500, then 200.

The outage is scaled down (seconds, not the issue's ten minutes) together with the retry
policy's intervals: what is tested is the policy, not the clock. FIRESENTRY_OUTAGE_REAL=1 runs
it at full length with the shipped policy (refused 10 min, 500 for 2 min; ~15 min) and writes
its figures to bench/results/: that run is a measurement, not part of the suite. With the old policy (8
attempts whatever the severity) every notification of an outage longer than its last attempt
was given up; now critical and major ones are all delivered, each once by key, and only the
warnings, whose policy allows three attempts here, are given up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.webhook import Received, WebhookReceiver
from store import alert_plan, channels
from tests.e2e.conftest import SECRET
from tests.e2e.test_supervision import DatabaseLink
from tests.helpers import engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e
SEVERITIES = ("critical", "major", "warning")
REAL = os.environ.get("FIRESENTRY_OUTAGE_REAL") == "1"
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
# The unit's webhook's rows (not the control room's notices of the failing channel).
_URGENT = (
    " FROM notifications WHERE receiver = 'hook'"
    " AND payload->'alert'->>'severity' IN ('critical', 'major')"
)
MIN_TRIES = "SELECT min(attempts)" + _URGENT
ALL_TRIES = "SELECT sum(attempts)" + _URGENT


class _Always500(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture()
def link(receiver: WebhookReceiver) -> Iterator[DatabaseLink]:
    """The road to the receiver, which the test closes (refused) and reroutes (500)."""
    road = DatabaseLink(receiver.port)
    yield road
    road.close()


@pytest.fixture()
def engine(
    db: Endpoints, prefix: str, receiver: WebhookReceiver, link: DatabaseLink, ops: WebhookReceiver
) -> Iterator[Engine]:
    """An engine whose webhook goes through the link, with short retry intervals (the
    shipped ones when REAL)."""
    fast = {"max_interval_s": 0.3}
    hooks = {
        "hook": {"url": f"http://127.0.0.1:{link.port}/hook", "secret": SECRET},
        "ops": {"url": ops.url, "secret": SECRET},
    }
    notify: dict[str, Any] = {"webhooks": hooks, "poll_interval_s": 0.2}
    if not REAL:
        notify |= {
            "channel_alert_after_s": 1.0,
            "channel_check_s": 0.2,
            "backoff_base_s": 0.05,
            "backoff_max_s": 0.3,
            "retry": {
                "critical": {"horizon_min": 30, **fast},
                "major": {"horizon_min": 30, **fast},
                "warning": {"max_attempts": 3, **fast},
                "info": {"max_attempts": 3, **fast},
            },
        }
    else:
        notify |= {"backoff_base_s": 1.0, "backoff_max_s": 300.0}
    settings = engine_settings(prefix, f"ingest-{uuid.uuid4().hex[:8]}", notify=notify)
    e = Engine(settings, db)
    e.start()
    assert e.consumer.wait_connected(10)
    yield e
    e.stop()


def _queue(db: Endpoints, n: int) -> dict[str, set[int]]:
    """n notifications, severities in turn; the ids of each severity's."""
    ids: dict[str, set[int]] = {s: set() for s in SEVERITIES}
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        for i in range(n):
            sev = SEVERITIES[i % len(SEVERITIES)]
            body = {
                "version": "2",
                "status": "firing",
                "kind": "firing",
                "alert": {"id": i, "severity": sev},
            }
            alert_plan.enqueue(conn, None, "webhook", "hook", body)
        rows = conn.execute(
            "SELECT id, payload->'alert'->>'severity' FROM notifications ORDER BY id"
        ).fetchall()
        channels.notify_outbox(conn)
    for nid, sev in rows:
        ids[sev].add(int(nid))
    return ids


@pytest.mark.timeout(1500 if REAL else 300)
def test_urgent_notifications_outlast_refused_then_failing_receiver(
    engine: Engine,
    db: Endpoints,
    receiver: WebhookReceiver,
    link: DatabaseLink,
    ops: WebhookReceiver,
) -> None:
    """Refused, then 500, then 200: every critical and major notification arrives once by key,
    none is given up; warnings stop after their three attempts. The control room's webhook is
    told the channel fails while it does, and told when it delivers again."""
    failing = ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    t0 = time.monotonic()
    try:
        link.down()
        ids = _queue(db, 99)
        if REAL:
            _outage_lasts(600)
        else:
            # Refused long enough for many attempts of every row (the old policy's 8 used up).
            wait_until(
                lambda: scalar(db.dsn(), MIN_TRIES) >= 10,
                60,
                "ten attempts of every notification while refused",
            )
        link.proxy.upstream_port = int(failing.server_address[1])  # now HTTP 500
        before = scalar(db.dsn(), ALL_TRIES)
        if REAL:
            _outage_lasts(120)
        else:
            wait_until(
                lambda: scalar(db.dsn(), ALL_TRIES) >= before + 66 * 5,
                60,
                "five more attempts each while the receiver answers 500",
            )
        assert ops.wait_for(lambda got: bool(_channel(got, "firing")), 30), "channel alert"
        link.up()
        back = time.monotonic()
        urgent = ids["critical"] | ids["major"]
        wait_until(
            lambda: (
                scalar(
                    db.dsn(),
                    "SELECT count(*) FROM notifications WHERE state = 'sent' AND id = ANY(%s)",
                    (sorted(urgent),),
                )
                == len(urgent)
            ),
            180 if REAL else 60,
            "every critical and major notification delivered",
        )
        delivered_after_s = time.monotonic() - back
    finally:
        failing.shutdown()
        failing.server_close()
    assert ops.wait_for(lambda got: bool(_channel(got, "resolved")), 60), "channel alert cleared"
    (opened,) = _channel(ops.received, "firing")
    assert opened.body["alert"]["device_id"] == "webhook:hook"
    if REAL:
        _record(db, time.monotonic() - t0, delivered_after_s, len(urgent), len(ids["warning"]))
    keys = [r.idempotency_key for r in receiver.received]
    assert len(keys) == len(set(keys)) == len(urgent)
    assert {r.body["alert"]["severity"] for r in receiver.received} == {"critical", "major"}
    given_up = scalar(
        db.dsn(), "SELECT array_agg(id ORDER BY id) FROM notifications WHERE state = 'given_up'"
    )
    assert set(given_up) == ids["warning"]
    assert scalar(db.dsn(), "SELECT max(attempts) FROM notifications WHERE state = 'given_up'") == (
        8 if REAL else 3
    )

    # The operator resends what the warning policy gave up, from another process.
    listed = _cli(db, "notify", "list", "--state", "given_up", "--limit", "500")
    assert listed.returncode == 0 and listed.stdout.count("given_up") == len(ids["warning"])
    resent = _cli(db, "notify", "retry", "--given-up", "--by", "Li (control room)")
    assert resent.returncode == 0, resent.stdout + resent.stderr
    assert f"queued again: {len(ids['warning'])}" in resent.stdout
    assert receiver.wait_for(lambda got: len(got) == 99, 30), "the given-up warnings delivered"
    keys = [r.idempotency_key for r in receiver.received]
    assert len(set(keys)) == 99
    assert scalar(db.dsn(), "SELECT count(*) FROM notifications WHERE state <> 'sent'") == 0
    assert scalar(
        db.dsn(), "SELECT count(*) FROM notifications WHERE retried_by = 'Li (control room)'"
    ) == len(ids["warning"])

    # Every attempt of one warning is on record: its failures, the give-up, the resend.
    shown = _cli(db, "notify", "show", str(min(ids["warning"])))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    tries = 8 if REAL else 3
    assert f"attempts ({tries + 1}):" in shown.stdout, shown.stdout
    assert shown.stdout.count(" failed ") == tries - 1 and " given_up " in shown.stdout
    assert "resent by Li (control room)" in shown.stdout and " sent " in shown.stdout


def _channel(got: list[Received], status: str) -> list[Received]:
    """The channel alert's notices of this status."""
    return [
        r
        for r in got
        if r.body["alert"]["rule_id"] == "channel_failing" and r.body["status"] == status
    ]


def _outage_lasts(seconds: float) -> None:
    """The outage phase of the full-length run: it lasts this long by design."""
    threading.Event().wait(seconds)


def _record(db: Endpoints, total_s: float, after_up_s: float, urgent: int, warnings: int) -> None:
    """The full-length run's figures, in bench/results/."""
    # The unit's webhook's rows: the control room's channel notices are counted apart.
    q = "SELECT count(*), max(attempts) FROM notifications WHERE state = %s AND receiver = %s"
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        sent = conn.execute(q, ("sent", "hook")).fetchone()
        given_up = conn.execute(q, ("given_up", "hook")).fetchone()
        told = conn.execute(
            "SELECT array_agg(kind ORDER BY id) FROM notifications WHERE receiver = 'ops'"
        ).fetchone()
    out = {
        "what": "99 notifications (33 critical, 33 major, 33 warning) through a webhook refused "
        "for 600 s, then answering 500 for 120 s, then 200; shipped retry policy",
        "urgent": urgent,
        "urgent_delivered": sent[0] if sent else 0,
        "urgent_max_attempts": sent[1] if sent else None,
        "warnings": warnings,
        "warnings_given_up": given_up[0] if given_up else 0,
        "warning_attempts": given_up[1] if given_up else None,
        "all_urgent_delivered_s_after_receiver_up": round(after_up_s, 1),
        "control_room_channel_notices": told[0] if told else [],
        "run_s": round(total_s, 1),
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"notify-outage-{stamp}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


def _cli(db: Endpoints, *args: str) -> subprocess.CompletedProcess[str]:
    """`firesentry …` in its own process, on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRESENTRY_")}
    env.update(
        {
            "FIRESENTRY_EMBEDDED__ENABLED": "false",
            "FIRESENTRY_DATABASE__HOST": db.db_host,
            "FIRESENTRY_DATABASE__PORT": str(db.db_port),
            "FIRESENTRY_DATABASE__DBNAME": db.db_name,
            "FIRESENTRY_DATABASE__USER": db.db_user,
            "FIRESENTRY_DATABASE__PASSWORD": db.db_password,
            "FIRESENTRY_LOG__FORMAT": "json",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "firesentry.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
