"""Fire alarms an operator can trust, with the engine and the API in separate processes.

The 3 a.m. sequence against a real broker and database: a detector alarms, a second detector
of the same panel alarms, the operator acts through the API (another process than the engine),
and the panel alarms again. Every alarm must be an alert someone is told of; none may vanish
into a count or into rule state that outlived the operator's close.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devices.catalog import DeviceType
from firesentry.embedded import Endpoints
from simulators.services.webhook import Received, WebhookReceiver
from store import registry as reg
from store import tokens as store_tokens
from tests.e2e.test_crash import EngineProcess
from tests.e2e.test_supervision import ApiProcess
from tests.helpers import Publisher, scalar, wait_until

pytestmark = pytest.mark.e2e
SECRET = "fire-alarm-secret"


class Site:
    """An engine and an API, each its own process, a webhook receiver and a device publisher."""

    def __init__(
        self,
        db: Endpoints,
        services: Endpoints,
        prefix: str,
        tmp: Path,
        rules: Path | None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.db, self.prefix = db, prefix
        self.receiver = WebhookReceiver(SECRET.encode()).start()
        env = {
            "FIRESENTRY_API__ENABLED": "false",
            "FIRESENTRY_NOTIFY__WEBHOOKS__HOOK__URL": self.receiver.url,
            "FIRESENTRY_NOTIFY__WEBHOOKS__HOOK__SECRET": SECRET,
            "FIRESENTRY_RULES__SILENCE_CHECK_S": "0.5",
        }
        if rules is not None:
            env["FIRESENTRY_RULES__FILE"] = str(rules)
        env.update(extra_env or {})
        self.engine = EngineProcess(
            db,
            prefix,
            f"ingest-{uuid.uuid4().hex[:8]}",
            tmp / "engine.log",
            services.mqtt_port,
            env,
        )
        try:
            self.api = ApiProcess(db, tmp / "api.log", extra_env or {})
        except BaseException:
            # A site that fails to start must not leave its engine running past the test.
            self.engine.kill()
            self.receiver.stop()
            raise
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            _, self.token = store_tokens.create_token(conn, "night shift", "operator")
        self.pub = Publisher(services, client_id=f"utd-{uuid.uuid4().hex[:8]}")
        self.seq = 0
        try:
            self.engine.wait_subscribed()
        except BaseException:
            self.close()
            raise

    def alarm(self, kind: str = "fire_alarm", **point: Any) -> None:
        """The panel reports an event (a detector's loop, point and text when given)."""
        self.seq += 1
        body = {"ts": int(time.time() * 1000), "seq": self.seq, "kind": kind, **point}
        self.pub.publish(f"{self.prefix}/utd-1/event", body)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """An operator's action through the API process."""
        req = urllib.request.Request(
            f"{self.api.url}/api/v1{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out

    def firing(self, n: int, what: str) -> list[Received]:
        """Wait until the webhook has had n firing notices; return them all."""

        def got() -> list[Received] | None:
            notices = [r for r in self.receiver.received if r.body.get("status") == "firing"]
            return notices if len(notices) >= n else None

        out = wait_until(got, 20, what)
        assert out is not None
        return out

    def alerts(self) -> list[tuple[Any, ...]]:
        """(id, rule, point_key, state, count) of every alert, oldest first."""
        with psycopg.connect(self.db.dsn(), autocommit=True) as conn:
            return conn.execute(
                "SELECT id, rule_id, point_key, state, count FROM alerts ORDER BY id"
            ).fetchall()

    def history(self, alert_id: int) -> list[str]:
        """The kinds of an alert's history lines, in order."""
        with psycopg.connect(self.db.dsn(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT kind FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,)
            ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        """Stop everything (an engine that already exited is only reaped)."""
        self.pub.close()
        if self.engine.proc.poll() is None:
            self.engine.terminate()
        else:
            self.engine.kill()
        self.api.stop()
        self.receiver.stop()


@pytest.fixture()
def site(unit: Endpoints, services: Endpoints, prefix: str, tmp_path: Path) -> Iterator[Site]:
    """The default rules."""
    s = Site(unit, services, prefix, tmp_path, None)
    yield s
    s.close()


def test_a_fire_alarm_after_a_close_opens_a_new_notified_alert(site: Site) -> None:
    """Closed before the panel resets, the next fire alarm (another detector, or the same one
    again) is a new alert that is notified, not swallowed by the engine's state."""
    site.alarm(loop=1, point=3, text="3F east corridor smoke detector")
    (first,) = site.firing(1, "first fire alarm notified")
    alert_id = first.body["alert"]["id"]
    assert first.body["alert"]["point_text"] == "3F east corridor smoke detector"
    assert (first.body["alert"]["loop"], first.body["alert"]["point"]) == (1, 3)
    assert first.body["alert"]["device_location"] == "1F fire control room"
    assert first.body["alert"]["unit_address"] == "12 Jiefang Rd"
    closed = site.post(
        f"/alerts/{alert_id}/close", {"verification": "false_alarm", "cause": "test"}
    )
    assert closed["state"] == "closed"

    site.alarm(loop=1, point=4, text="3F west corridor smoke detector")
    notices = site.firing(2, "a second detector's alarm after the close")
    assert notices[1].body["alert"]["id"] != alert_id
    assert notices[1].body["alert"]["point_text"] == "3F west corridor smoke detector"

    site.alarm(loop=1, point=3, text="3F east corridor smoke detector")
    notices = site.firing(3, "the closed detector alarming again")
    again = notices[2].body["alert"]
    assert again["id"] not in (alert_id, notices[1].body["alert"]["id"])
    assert again["state"] == "firing" and again["point"] == 3
    states = [(rule, key, state) for _, rule, key, state, _ in site.alerts()]
    assert states == [
        ("fire_alarm", "1-3", "closed"),
        ("fire_alarm", "1-4", "firing"),
        ("fire_alarm", "1-3", "firing"),
    ]


def test_a_fire_alarm_after_a_resolve_fires_again(site: Site) -> None:
    """Resolved by hand before the panel resets, the same detector's next alarm re-fires its
    alert and tells everyone again."""
    site.alarm(loop=2, point=7)
    (first,) = site.firing(1, "fire alarm notified")
    alert_id = first.body["alert"]["id"]
    assert site.post(f"/alerts/{alert_id}/resolve", {})["state"] == "resolved"
    site.alarm(loop=2, point=7)
    notices = site.firing(2, "the resolved detector alarming again")
    assert notices[1].body["alert"]["id"] == alert_id
    assert notices[1].body["alert"]["state"] == "firing"
    assert site.history(alert_id) == ["opened", "resolved", "refired"]


def test_a_second_detector_is_a_new_notified_alert_and_says_the_fire_spreads(site: Site) -> None:
    """While the first detector's alert is open, a second one alarming is its own alert, told
    to everyone as the unit's second alarming detector; the same detector again is counted on
    its alert's record without paging anyone; the panel's reset clears both."""
    site.alarm(loop=1, point=3, text="3F east corridor")
    (first,) = site.firing(1, "first detector")
    assert first.body["unit_fire_alarms"] == 1
    site.alarm(loop=1, point=5, text="4F stairwell")
    notices = site.firing(2, "second detector")
    second = notices[1].body
    assert second["unit_fire_alarms"] == 2
    assert second["alert"]["id"] != first.body["alert"]["id"]
    assert "spreading" in site.history(second["alert"]["id"])

    site.alarm(loop=1, point=3, text="3F east corridor")
    wait_until(
        lambda: site.history(first.body["alert"]["id"]) == ["opened", "repeated"],
        20,
        "the repeat recorded on the first alert",
    )
    counts = {key: n for _, _, key, _, n in site.alerts()}
    assert counts == {"1-3": 2, "1-5": 1}

    site.alarm("reset")
    wait_until(
        lambda: [s for *_, s, _ in site.alerts()] == ["resolved", "resolved"],
        20,
        "the panel's reset clears every detector",
    )
    firing = [r for r in site.receiver.received if r.body.get("status") == "firing"]
    assert len(firing) == 2, "a repeat of an open detector must not page anyone"


def _rearming(folder: Path, rule_id: str) -> Path:
    """The default rules with one rule re-arming 2 s after an operator's resolve or close."""
    default = Path(__file__).resolve().parents[2] / "rules" / "default_rules.yaml"
    line = f"  - id: {rule_id}\n"
    text = default.read_text(encoding="utf-8").replace(line, f"{line}    rearm: 2\n", 1)
    assert "rearm: 2" in text
    out = folder / "rules.yaml"
    out.write_text(text, encoding="utf-8")
    return out


@pytest.fixture()
def rearm_site(unit: Endpoints, services: Endpoints, prefix: str, tmp_path: Path) -> Iterator[Site]:
    """Default rules, with residual current re-arming 2 s after an operator's resolve."""
    s = Site(unit, services, prefix, tmp_path, _rearming(tmp_path, "residual_current_high"))
    yield s
    s.close()


def _reading(site: Site, ma: float, *, stored: bool = False) -> None:
    """The monitor reports a residual current; with `stored`, wait until it is in the database
    (so that consecutive readings are evaluated in order, each after the last)."""
    before = scalar(site.db.dsn(), "SELECT count(*) FROM telemetry") if stored else 0
    body = {"ts": int(time.time() * 1000), "metrics": {"residual_current_ma": ma}}
    site.pub.publish(f"{site.prefix}/em-1/telemetry", body)
    if stored:
        wait_until(
            lambda: scalar(site.db.dsn(), "SELECT count(*) FROM telemetry") > before,
            20,
            "reading stored",
        )


def test_a_breach_resolved_by_hand_reopens_after_rearm_while_it_holds(rearm_site: Site) -> None:
    """A residual current still in breach after the operator resolved it (in the API's
    process) opens again once its re-arm time has passed: the engine learned of the action."""
    site = rearm_site
    _reading(site, 500)
    (first,) = site.firing(1, "residual current alert")
    alert_id = first.body["alert"]["id"]
    assert site.post(f"/alerts/{alert_id}/resolve", {})["state"] == "resolved"

    def reopened() -> bool:
        _reading(site, 520)
        return len([r for r in site.receiver.received if r.body.get("status") == "firing"]) >= 2

    wait_until(reopened, 30, "the alert re-opened after re-arm", interval=0.5)
    assert scalar(site.db.dsn(), "SELECT state FROM alerts WHERE id = %s", (alert_id,)) == "firing"
    assert site.history(alert_id)[:3] == ["opened", "resolved", "refired"]


def test_a_breach_resolved_by_hand_without_rearm_reopens_only_after_clearing(site: Site) -> None:
    """Without `rearm`, readings still in breach after a manual resolve open nothing; once the
    current falls back and rises again, the alert fires again."""
    _reading(site, 500)
    (first,) = site.firing(1, "residual current alert")
    alert_id = first.body["alert"]["id"]
    site.post(f"/alerts/{alert_id}/resolve", {})
    for _ in range(5):
        _reading(site, 510, stored=True)
    _reading(site, 100, stored=True)
    wait_until(
        lambda: (
            "cleared" not in site.history(alert_id)
            and scalar(site.db.dsn(), "SELECT count(*) FROM rule_state WHERE active") == 0
        ),
        20,
        "the engine saw the current fall back",
    )
    assert len([r for r in site.receiver.received if r.body.get("status") == "firing"]) == 1
    _reading(site, 600)
    notices = site.firing(2, "the new breach fires again")
    assert notices[1].body["alert"]["id"] == alert_id


@pytest.fixture()
def offline_site(
    unit: Endpoints, services: Endpoints, prefix: str, tmp_path: Path
) -> Iterator[Site]:
    """A monitor that beats every second (offline after 3 s), device_offline re-arming in 2 s."""
    with psycopg.connect(unit.dsn(), autocommit=True) as conn:
        reg.add_device(conn, "em-2", "u1", DeviceType.ELECTRICAL, heartbeat_s=1)
    s = Site(unit, services, prefix, tmp_path, _rearming(tmp_path, "device_offline"))
    yield s
    s.close()


def test_an_offline_alert_closed_while_the_device_stays_silent_reopens_after_rearm(
    offline_site: Site,
) -> None:
    """Closed in the API's process while the device is still silent, the offline alert opens
    again (a new alert, notified) once the rule's re-arm time has passed."""
    site = offline_site
    body = {"ts": int(time.time() * 1000), "metrics": {"residual_current_ma": 10.0}}
    site.pub.publish(f"{site.prefix}/em-2/telemetry", body)
    (first,) = site.firing(1, "offline alert")
    assert first.body["alert"]["rule_id"] == "device_offline"
    assert site.post(f"/alerts/{first.body['alert']['id']}/close", {})["state"] == "closed"
    notices = site.firing(2, "re-opened after re-arm")
    again = notices[1].body["alert"]
    assert again["rule_id"] == "device_offline" and again["id"] != first.body["alert"]["id"]
