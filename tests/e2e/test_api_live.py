"""The API beside a running engine: /metrics counts what ingest and the outbox did; `firesentry api`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.server import ApiServer
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.webhook import WebhookReceiver
from tests.api.conftest import api_options
from tests.e2e.test_console import token
from tests.helpers import Publisher, wait_until

pytestmark = pytest.mark.e2e


def _samples(url: str, bearer: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {bearer}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture()
def api_server(db: Endpoints, engine: Engine) -> Iterator[ApiServer]:
    """The API on a free port in the engine's process."""
    server = ApiServer(api_options(db), "127.0.0.1", 0).start()
    yield server
    server.stop()


def test_metrics_count_ingest_alerts_and_notifications(
    api_server: ApiServer,
    db: Endpoints,
    services: Endpoints,
    prefix: str,
    receiver: WebhookReceiver,
) -> None:
    """Messages, dead letters by reason, batches, commits, alerts and webhooks sent are counted."""
    admin = token(db, "admin", "ops")
    before = _samples(api_server.url, admin)
    pub = Publisher(services, client_id=f"metrics-{time.monotonic_ns()}")
    try:
        pub.publish(f"{prefix}/em-1/telemetry", b"not json")
        pub.publish(
            f"{prefix}/em-1/telemetry",
            {"ts": int(time.time() * 1000), "metrics": {"residual_current_ma": 400.0}},
        )
        assert receiver.wait_for(lambda r: len(r) >= 1, 15)
    finally:
        pub.close()

    def grew() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        after = _samples(api_server.url, admin)
        sent = (("channel", "webhook"), ("result", "sent"))
        ok = after.get(("firesentry_notifications_total", sent), 0) > before.get(
            ("firesentry_notifications_total", sent), 0
        )
        return after if ok else None

    after = wait_until(grew, 10, "webhook counted as sent")
    assert after is not None

    def delta(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert delta("firesentry_messages_total") == 2
    assert delta("firesentry_messages_rejected_total", (("reason", "malformed"),)) == 1
    assert delta("firesentry_alerts_opened_total") == 1
    assert delta("firesentry_batch_messages_count") >= 1
    assert delta("firesentry_batch_commit_seconds_count") >= 1


def test_api_command_serves_until_sigterm(db: Endpoints) -> None:
    """`firesentry api` serves the API alone, tells a token in /readyz that no engine runs, exits 0
    on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIRESENTRY_")}
    env.update(
        {
            "FIRESENTRY_EMBEDDED__ENABLED": "false",
            "FIRESENTRY_MQTT__HOST": db.mqtt_host,
            "FIRESENTRY_MQTT__PORT": str(db.mqtt_port),
            "FIRESENTRY_DATABASE__HOST": db.db_host,
            "FIRESENTRY_DATABASE__PORT": str(db.db_port),
            "FIRESENTRY_DATABASE__DBNAME": db.db_name,
            "FIRESENTRY_DATABASE__USER": db.db_user,
            "FIRESENTRY_DATABASE__PASSWORD": db.db_password,
            "FIRESENTRY_API__PORT": "0",
            "FIRESENTRY_LOG__FORMAT": "json",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "firesentry.cli", "api"],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"on (http://\S+)/ ", line)
        assert m, line
        # Database and broker answer; no engine has ever reported, so it is not ready (503):
        # ok/fail only without a token, the reasons with one (any role).
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(m.group(1) + "/readyz", timeout=10)
        assert err.value.code == 503
        body = json.loads(err.value.read())
        assert body["status"] == "not_ready" and body["engines"] == []
        assert body["checks"] == {
            "database": "ok",
            "broker": "ok",
            "engine": "fail",
            "outbox": "ok",
        }
        analyst = token(db, "analyst", "readyz")
        req = urllib.request.Request(
            m.group(1) + "/readyz", headers={"Authorization": f"Bearer {analyst}"}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        body = json.loads(err.value.read())
        assert body["checks"]["engine"] == "none registered"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
