"""The console in a real browser (Debian's chromium driven by Playwright) against a live engine."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.silences import SilenceRequest, create_silence
from api.server import ApiServer
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from rules.loader import load_rules
from store import tokens as store_tokens
from tests.api.conftest import api_options
from tests.helpers import Publisher

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (`apt-get install chromium`; `make test` installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture()
def browser() -> Iterator[Any]:
    """Headless chromium, or a skip that says what is missing."""
    reason = _skip_reason()
    if reason is not None:
        print(f"skipping browser tests: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def api_server(db: Endpoints, engine: Engine) -> Iterator[ApiServer]:
    """The API and console on a free port, beside the engine of this test."""
    server = ApiServer(api_options(db), "127.0.0.1", 0).start()
    yield server
    server.stop()


def token(db: Endpoints, role: str, name: str) -> str:
    """A fresh token of a role."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        return store_tokens.create_token(conn, name, role)[1]


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    """A device-side publisher on the test broker."""
    p = Publisher(services, client_id=f"console-pub-{time.monotonic_ns()}")
    yield p
    p.close()


def _watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def test_operator_sees_a_live_fire_alarm_and_acknowledges_it(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """A fire alarm published over MQTT appears on the board without a reload; ack changes it."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/")
    page.fill("#token-input", token(db, "operator", "Li (control room)"))
    page.click("#sign-in")
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    assert page.locator("#alert-list li.alert").count() == 0

    now = int(time.time() * 1000)
    for i in range(30):
        pub.publish(
            f"{prefix}/em-1/telemetry",
            {"ts": now - (29 - i) * 60_000, "metrics": {"residual_current_ma": 40.0 + i * 11}},
        )
    pub.publish(
        f"{prefix}/utd-1/event",
        {"ts": now, "seq": 1, "kind": "fire_alarm", "loop": 1, "point": 7, "text": "3F smoke"},
    )
    fire = page.locator("#alert-list li.alert.fire")
    fire.wait_for(timeout=WAIT_MS)
    assert fire.get_attribute("data-state") == "firing"
    page.wait_for_selector("body[data-alarm=on]", timeout=WAIT_MS)
    page.wait_for_selector(
        "#alert-list li.alert[data-severity=major]", timeout=WAIT_MS
    )  # residual current over 300 mA
    assert page.locator("#counters .sev-critical .n").inner_text() == "1"
    # Most severe first: the fire alarm heads the list.
    assert "fire" in (page.locator("#alert-list li.alert").first.get_attribute("class") or "")
    fire.click()
    page.wait_for_selector("#detail .history li[data-kind=opened]", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "console-board.png"))

    fire.locator("button[data-action=ack]").click()
    page.wait_for_selector("#alert-list li.alert.fire[data-state=acknowledged]", timeout=WAIT_MS)
    page.wait_for_selector("body[data-alarm=off]", timeout=WAIT_MS)
    page.wait_for_selector("#detail .history li[data-kind=acknowledged]", timeout=WAIT_MS)
    assert "Li (control room)" in page.locator("#detail .history").inner_text()

    # Closing a fire alarm asks for verification; a false alarm needs its cause.
    page.locator("#alert-list li.alert.fire button[data-action=close]").click()
    page.check("#close-dialog input[value=false_alarm]")
    page.select_option("#close-cause", "dust_steam")
    page.click("#close-confirm")
    page.wait_for_selector("#alert-list li.alert.fire", state="detached", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "console-board-after.png"))

    page.goto(api_server.url + "/#/unit/u1")
    page.wait_for_selector(".device-card[data-device=em-1] svg.chart .threshold", timeout=WAIT_MS)
    page.wait_for_selector(".device-card[data-device=em-1] svg.chart polyline.line")
    page.screenshot(path=str(ARTIFACTS / "console-unit.png"), full_page=True)

    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("UPDATE units SET lat = 30.657, lon = 104.081 WHERE id = 'u1'")
        conn.execute(
            "INSERT INTO units (id, name, district, lat, lon) VALUES"
            " ('u2', 'Hongxing Plant', 'D2', 30.690, 104.120)"
        )
    page.goto(api_server.url + "/#/map")
    page.wait_for_selector("svg.map .unit-dot[data-unit=u1].sev-major", timeout=WAIT_MS)
    page.click("#lang")
    page.wait_for_selector("html[lang=zh-CN]")
    assert "辖区地图" in page.locator("#nav").inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-map-zh.png"))
    assert errors == []


def test_phone_layout_and_read_only_analyst(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """On a phone an analyst sees the live board without action buttons and no operator pages."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "analyst", "Chen (analyst)"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    assert "token=" not in page.url
    pub.publish(
        f"{prefix}/wp-1/telemetry",
        {"ts": int(time.time() * 1000), "metrics": {"pressure_mpa": 0.04}},
    )
    page.wait_for_selector("#alert-list li.alert[data-severity=major]", timeout=WAIT_MS)
    assert page.locator("#alert-list button").count() == 0
    views = page.locator("#nav a").evaluate_all("els => els.map(e => e.dataset.view)")
    assert views == ["board", "telemetry", "stats"]
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    page.screenshot(path=str(ARTIFACTS / "console-phone.png"), full_page=True)
    page.goto(api_server.url + "/#/units")
    page.wait_for_selector("#view p.empty", timeout=WAIT_MS)
    page.goto(api_server.url + "/#/telemetry")
    page.fill("#tm-source", "wp-1")
    page.select_option("#tm-metric", "pressure_mpa")
    page.select_option("#tm-bucket", "raw")
    page.click("#view form button[type=submit]")
    page.wait_for_selector("#telemetry-chart svg.chart circle.dot", timeout=WAIT_MS)
    assert errors == []


def test_board_marks_silenced_alerts_and_the_silences_view_ends_them(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """A fire alarm under a maintenance silence is on the board marked with the silence (id,
    reason); the Silences view lists the silence and ends it, and the mark goes away."""
    ARTIFACTS.mkdir(exist_ok=True)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        req = SilenceRequest("panel maintenance", unit_id="u1", duration_min=120)
        sid = create_silence(conn, req, author="Admin Zhou", admin=True, rules=load_rules(None)).id
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "operator", "Li (control room)"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    pub.publish(
        f"{prefix}/utd-1/event",
        {"ts": int(time.time() * 1000), "seq": 1, "kind": "fire_alarm", "loop": 1, "point": 7},
    )
    fire = page.locator(f"#alert-list li.alert.fire.silenced[data-silenced='{sid}']")
    fire.wait_for(timeout=WAIT_MS)
    tag = fire.locator(".silenced-tag")
    page.wait_for_function(
        "el => el.textContent.includes('panel maintenance')", arg=tag.element_handle()
    )
    assert f"#{sid}" in tag.inner_text()
    fire.click()
    page.wait_for_selector("#detail .history li[data-kind=silenced]", timeout=WAIT_MS)
    assert "panel maintenance" in page.locator("#detail .silence-fact").inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-silenced.png"))

    page.click("#nav a[data-view=silences]")
    row = page.locator(f"#silences-table tr[data-silence='{sid}'][data-state=active]")
    row.wait_for(timeout=WAIT_MS)
    assert "panel maintenance" in row.inner_text() and "Admin Zhou" in row.inner_text()
    row.locator("button[data-action=end-silence]").click()
    page.wait_for_selector("#view p.empty", timeout=WAIT_MS)
    page.check("#show-ended")
    ended = page.locator(f"#silences-table tr[data-silence='{sid}'][data-state=ended]")
    ended.wait_for(timeout=WAIT_MS)
    assert "Li (control room)" in ended.inner_text()

    # The engine tells the parties the alarm that still fires, and the mark goes.
    page.click("#nav a[data-view=board]")
    page.wait_for_selector("#alert-list li.alert.fire:not(.silenced)", timeout=WAIT_MS)
    assert page.locator("#alert-list .silenced-tag").count() == 0
    assert errors == []


def test_missing_chromium_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the chromium binary the browser tests skip with a reason that says how to get it."""
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "chromium")
    reason = _skip_reason()
    assert reason is not None and "apt-get install chromium" in reason
