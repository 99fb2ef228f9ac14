"""Rule state across engine restarts, deadman on a timer and hot reload, on real services."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.webhook import WebhookReceiver
from store import registry as reg
from tests.e2e.conftest import SECRET
from tests.helpers import Publisher, engine_settings, scalar, wait_until

pytestmark = pytest.mark.e2e

RULES = """
rules:
  - id: hot
    device_type: electrical_monitor
    kind: above
    metric: residual_current_ma
    threshold: {threshold}
    for: 30
    severity: major
    message: {{en: "hot {{value}}", zh-CN: "热 {{value}}"}}
  - id: silent
    kind: deadman
    threshold: {{attribute: heartbeat_s, default: 60, factor: 3}}
    severity: warning
    message: {{en: "silent", zh-CN: "离线"}}
"""


@pytest.fixture()
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(RULES.format(threshold=300))
    return p


@pytest.fixture()
def make_engine(
    db: Endpoints, prefix: str, receiver: WebhookReceiver, rules_file: Path
) -> Iterator[Any]:
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        reg.add_unit(conn, "u1", "Rules Unit")
        reg.add_device(conn, "em-1", "u1", DeviceType.ELECTRICAL, heartbeat_s=1)
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"
    engines: list[Engine] = []

    def make() -> Engine:
        s = engine_settings(
            prefix,
            client_id,
            rules={"file": str(rules_file), "silence_check_s": 0.2},
            notify={"webhooks": {"t": {"url": receiver.url, "secret": SECRET}}},
        )
        e = Engine(s, db)
        e.start()
        assert e.consumer.wait_connected(10)
        engines.append(e)
        return e

    yield make
    for e in engines:
        e.stop()


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    p = Publisher(services, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def alert_state(db: Endpoints, rule: str) -> Any:
    return scalar(db.dsn(), "SELECT state FROM alerts WHERE rule_id = %s", (rule,))


def test_duration_continues_after_restart(
    make_engine: Any, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """20 s into a 30 s duration the engine restarts; the reading at 30 s still opens the alert."""
    t0 = int(time.time() * 1000) - 60_000
    first = make_engine()
    for s in (0, 20):
        pub.publish(
            f"{prefix}/em-1/telemetry",
            {"ts": t0 + s * 1000, "metrics": {"residual_current_ma": 400.0}},
        )
    wait_until(
        lambda: scalar(
            db.dsn(), "SELECT count(*) FROM rule_state WHERE rule_id = 'hot' AND raw AND NOT active"
        ),
        15,
        "half-way state persisted",
    )
    first.stop()
    make_engine()
    pub.publish(
        f"{prefix}/em-1/telemetry", {"ts": t0 + 30_000, "metrics": {"residual_current_ma": 400.0}}
    )
    wait_until(lambda: alert_state(db, "hot") == "firing", 15, "alert opened after restart")
    opened_at = scalar(
        db.dsn(),
        "SELECT (extract(epoch FROM opened_at) * 1000)::bigint FROM alerts WHERE rule_id = 'hot'",
    )
    assert opened_at == t0 + 30_000


def test_deadman_opens_when_silent_and_clears_when_heard(
    make_engine: Any, db: Endpoints, prefix: str, pub: Publisher, receiver: WebhookReceiver
) -> None:
    """A device with a 1 s heartbeat silent for 3 s gets an offline alert; its next message clears it."""
    make_engine()
    pub.publish(f"{prefix}/em-1/telemetry", {"ts": int(time.time() * 1000), "metrics": {}})
    wait_until(lambda: alert_state(db, "silent") == "firing", 20, "deadman alert")
    pub.publish(f"{prefix}/em-1/telemetry", {"ts": int(time.time() * 1000), "metrics": {}})
    wait_until(lambda: alert_state(db, "silent") == "resolved", 20, "deadman cleared")
    assert receiver.wait_for(
        lambda r: (
            [x.body["status"] for x in r if x.body["alert"]["rule_id"] == "silent"][:2]
            == ["firing", "resolved"]
        ),
        15,
    )


def test_hot_reload_applies_a_new_threshold(
    make_engine: Any, db: Endpoints, prefix: str, pub: Publisher, rules_file: Path
) -> None:
    """After the rule file changes and a reload, the new threshold decides."""
    eng = make_engine()
    t0 = int(time.time() * 1000) - 120_000
    pub.publish(f"{prefix}/em-1/telemetry", {"ts": t0, "metrics": {"residual_current_ma": 250.0}})
    wait_until(lambda: scalar(db.dsn(), "SELECT count(*) FROM telemetry") == 1, 15, "stored")
    rules_file.write_text(RULES.format(threshold=200))
    eng.reload_rules()
    wait_until(lambda: eng.pipeline.engine.rules[0].threshold == 200, 10, "new rules swapped in")
    for s in (0, 40):
        pub.publish(
            f"{prefix}/em-1/telemetry",
            {"ts": t0 + 1000 + s * 1000, "metrics": {"residual_current_ma": 250.0}},
        )
    wait_until(lambda: alert_state(db, "hot") == "firing", 15, "alert under the new threshold")


def test_broken_rule_file_keeps_the_old_rules(
    make_engine: Any, db: Endpoints, rules_file: Path
) -> None:
    """A reload of a broken file is refused and the engine keeps working with the old rules."""
    eng = make_engine()
    before = eng.pipeline.engine
    rules_file.write_text("rules: [{id: broken}]")
    eng.reload_rules()
    wait_until(lambda: eng.consumer._reload is None, 10, "reload attempted")
    assert eng.pipeline.engine is before
