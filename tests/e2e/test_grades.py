"""The four-colour grade from live data: an engine and an API process, a panel and a monitor.

A shop starts blue; a fire alarm nobody has verified, a panel fault and a residual-current alert
make it orange with those three reasons; the panel resets, the monitor recovers and the operator
closes the alarm as a false alarm, and the shop is blue again, with the false alarm still said.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firesentry.embedded import Endpoints
from tests.e2e.test_fire_alarms import Site
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def get(site: Site, path: str) -> Any:
    """A GET through the API process with the operator's token."""
    req = urllib.request.Request(
        f"{site.api.url}/api/v1{path}", headers={"Authorization": f"Bearer {site.token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def residual(site: Site, ma: float) -> None:
    """The electrical monitor reports its residual current."""
    body = {"ts": int(time.time() * 1000), "metrics": {"residual_current_ma": ma}}
    site.pub.publish(f"{site.prefix}/em-1/telemetry", body)


def open_rules(site: Site) -> set[str]:
    """The rules of the alerts that are firing."""
    return {rule for _, rule, _, state, _ in site.alerts() if state == "firing"}


@pytest.fixture()
def site(unit: Endpoints, services: Endpoints, prefix: str, tmp_path: Path) -> Iterator[Site]:
    """The default rules and the shipped risk model."""
    s = Site(unit, services, prefix, tmp_path, None)
    yield s
    s.close()


def test_a_unit_turns_orange_and_back_with_its_reasons(site: Site) -> None:
    """Grades follow the unit's alerts, each change recorded with its reasons and trigger."""
    first = wait_until(
        lambda: get(site, "/units/u1/grades")["changes"], 30, "the engine's first grading"
    )
    assert [(c["from"], c["to"], c["trigger"]) for c in first] == [(None, "blue", "schedule")]

    site.alarm(loop=2, point=7, text="2F kitchen smoke detector")
    site.alarm("fault", loop=3, point=1, text="loop 3 open circuit")
    residual(site, 420.0)
    wait_until(
        lambda: {"fire_alarm", "panel_fault", "residual_current_high"} <= open_rules(site),
        20,
        "three alerts firing",
    )
    orange = site.post("/units/u1/grade", {})
    assert (orange["grade"], orange["score"]) == ("orange", 28)
    assert [r["en"] for r in orange["reasons"]] == [
        "a fire alarm not yet verified",
        "a fault open now",
        "an electrical alert in 7 days",
    ]
    assert orange["reasons"][0]["zh-CN"] == "1起火警尚未核实"

    site.alarm("reset")
    residual(site, 12.0)
    wait_until(lambda: not open_rules(site), 20, "the panel reset and the monitor recovered")
    (fire,) = [a for a in site.alerts() if a[1] == "fire_alarm"]
    site.post(f"/alerts/{fire[0]}/close", {"verification": "false_alarm", "cause": "dust_steam"})
    blue = site.post("/units/u1/grade", {})
    assert (blue["grade"], blue["score"]) == ("blue", 9)
    assert [r["factor"] for r in blue["reasons"]] == ["electrical_alerts", "false_alarms"]

    changes = [(c["from"], c["to"], c["trigger"]) for c in blue["changes"]]
    assert changes == [
        ("orange", "blue", "request:night shift"),
        ("blue", "orange", "request:night shift"),
        (None, "blue", "schedule"),
    ]
    assert blue["changes"][1]["reasons"] == orange["reasons"]
    (listed,) = get(site, "/units")["items"]
    assert (listed["grade"], listed["grade_score"]) == ("blue", 9)
