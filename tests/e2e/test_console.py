"""The console in a real browser (Debian's chromium driven by Playwright) against a live engine."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from openpyxl import load_workbook

from alerts.fire_119 import Fire119Options
from alerts.silences import SilenceRequest, create_silence
from api.server import ApiServer
from api.state import MapTiles
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from rules.loader import load_rules
from simulators.services.webhook import WebhookReceiver
from store import tokens as store_tokens
from supervision.grader import grade_now
from supervision.model import load_model
from tests.api.conftest import api_options
from tests.e2e.test_supervision import DatabaseLink
from tests.helpers import Publisher, engine_settings

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
LEAFLET = Path("/usr/share/javascript/leaflet/leaflet.esm.js")  # Debian's libjs-leaflet
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DOCS = Path(__file__).resolve().parents[2] / "docs"
# Set to 1 to (re)write the console's pictures in docs/ from these tests.
SCREENSHOTS = os.environ.get("FIRESENTRY_SCREENSHOTS") == "1"
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


def _wait_sound_banner(page: Any, errors: list[str]) -> None:
    """Wait for the "sound is off" banner; if it never comes, say what the page showed instead
    (this wait once timed out in a full run and never again alone)."""
    try:
        page.wait_for_selector("#sound-banner[data-sound=blocked]", timeout=WAIT_MS)
    except Exception as exc:
        seen = page.evaluate(
            "() => ({sound: document.body.dataset.sound,"
            " audio: typeof AudioContext, banners: document.querySelector('#banners')?.outerHTML})"
        )
        raise AssertionError(
            f"no blocked-sound banner: page showed {seen}; errors {errors}"
        ) from exc


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
    page.wait_for_selector(".leaflet-container path.unit-marker.unit-u1.sev-major", timeout=WAIT_MS)
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
    assert views == ["board", "search", "notifications", "telemetry", "stats", "hazards"]
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


def _fire(pub: Publisher, prefix: str, seq: int, loop: int, point: int, text: str) -> None:
    pub.publish(
        f"{prefix}/utd-1/event",
        {
            "ts": int(time.time() * 1000),
            "seq": seq,
            "kind": "fire_alarm",
            "loop": loop,
            "point": point,
            "text": text,
        },
    )


PEOPLE = {
    "en": ("Riverside Mall", "1 River Rd, Jinjiang", "B1 fire control room", "Wang Fang"),
    "zh-CN": ("滨江购物中心", "锦江区滨江路 1 号", "B1 消防控制室", "王芳"),
}


def _add_people(db: Endpoints, lang: str = "en") -> None:
    name, address, location, person = PEOPLE[lang]
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("UPDATE units SET address = %s, name = %s WHERE id = 'u1'", (address, name))
        conn.execute("UPDATE devices SET location = %s WHERE id = 'utd-1'", (location,))
        conn.execute(
            "INSERT INTO contacts (unit_id, name, role, phone) VALUES"
            " ('u1', %s, 'fire_safety_manager', '+86 138 0000 0001')",
            (person,),
        )


def test_database_outage_shows_a_degraded_banner_and_live_goes_away(
    browser: Any, db: Endpoints, engine: Engine
) -> None:
    """With the API's database unreachable the console says so on every view and drops "Live";
    a view that cannot load says why; after recovery "Live" returns and the banner goes."""
    link = DatabaseLink(db.db_port)
    server = ApiServer(api_options(dataclasses.replace(db, db_port=link.port)), "127.0.0.1", 0)
    server.start()
    try:
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        errors = _watch_errors(page)
        page.goto(server.url + "/#token=" + token(db, "operator", "Li (control room)"))
        page.wait_for_selector("#conn.live", timeout=WAIT_MS)
        assert page.locator("#health-banner").count() == 0

        link.down()
        page.wait_for_selector("#health-banner[data-problem=database]", timeout=WAIT_MS)
        page.wait_for_selector("#conn:not(.live)", timeout=WAIT_MS)
        page.click("#nav a[data-view=units]")
        page.wait_for_selector("#view .view-error", timeout=WAIT_MS)
        assert page.locator("#health-banner[data-problem=database]").is_visible()
        page.screenshot(path=str(ARTIFACTS / "console-degraded.png"))

        link.up()
        page.wait_for_selector("#conn.live", timeout=WAIT_MS)
        page.wait_for_selector("#health-banner", state="detached", timeout=WAIT_MS)
        page.click("#view-retry")
        page.wait_for_selector("#units-table tr[data-unit=u1]", timeout=WAIT_MS)
        # What the browser logs about the refused requests is expected; nothing else is.
        assert [e for e in errors if "503" not in e and "Failed to load" not in e] == []
    finally:
        server.stop()
        link.close()


def test_a_failing_notification_channel_shows_a_banner_until_it_clears(
    browser: Any, api_server: ApiServer, db: Endpoints
) -> None:
    """An open channel alert (the outbox worker opens it) shows on every view: which channel,
    since when, how many messages wait; it goes once the alert clears."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.goto(api_server.url + "/#token=" + token(db, "operator", "Li (control room)"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    assert page.locator("#channel-banner").count() == 0
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO channel_alerts (subject, failing_since, waiting, last_error)"
            " VALUES ('sms', now() - interval '5 minutes', 14, 'HTTP 503')"
        )
    banner = page.locator("#channel-banner .channel-failing")
    banner.wait_for(timeout=WAIT_MS)
    assert "sms" in banner.inner_text() and "14" in banner.inner_text()
    page.click("#nav a[data-view=units]")
    assert page.locator("#channel-banner").is_visible()
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("UPDATE channel_alerts SET cleared_at = now()")
    page.wait_for_selector("#channel-banner", state="detached", timeout=WAIT_MS)


def test_a_fire_alarm_raises_a_banner_on_every_view_and_sound_says_when_it_is_off(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """After a load the sound banner says sound is off until a click; two detectors of a unit
    alarming while on Units raise the fire banner (unit, detectors, "2 detectors alarming"),
    whose button opens the alert on the board, where the unit's alarms are grouped."""
    ARTIFACTS.mkdir(exist_ok=True)
    _add_people(db)
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "operator", "Li (control room)"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    # No click yet: the browser keeps sound off, and the console says so.
    _wait_sound_banner(page, errors)
    assert page.locator("body[data-sound=blocked]").count() == 1

    page.goto(api_server.url + "/#/units")
    page.wait_for_selector("#units-table tr[data-unit=u1]", timeout=WAIT_MS)
    _fire(pub, prefix, 1, 1, 7, "3F east corridor smoke detector")
    banner = page.locator("#fire-banner .fire-unit[data-unit=u1]")
    banner.wait_for(timeout=WAIT_MS)
    assert "Riverside Mall" in banner.inner_text() and "1 River Rd" in banner.inner_text()
    assert "3F east corridor smoke detector" in banner.inner_text()
    _fire(pub, prefix, 2, 2, 3, "3F west corridor smoke detector")
    page.wait_for_selector(
        "#fire-banner .fire-unit[data-unit=u1] .fire-count[data-count='2']", timeout=WAIT_MS
    )
    assert banner.locator(".fire-entry").count() == 2
    assert "2 detectors alarming" in banner.inner_text()
    # Still on Units: the banner is on this view too.
    assert page.locator("#view[data-view=units]").count() == 1
    page.screenshot(path=str(ARTIFACTS / "console-fire-banner.png"))

    first = banner.locator(".fire-entry").last
    alert_id = first.get_attribute("data-id")
    first.locator("button.open-alert").click()
    page.wait_for_selector(f"#detail .detail-head[data-id='{alert_id}']", timeout=WAIT_MS)
    assert page.url.endswith(f"#/board/{alert_id}")
    detail = page.locator("#detail").inner_text()
    assert "1 River Rd, Jinjiang" in detail and "B1 fire control room" in detail
    assert "3F east corridor smoke detector" in detail and "loop 1, point 7" in detail
    tel = page.locator("#detail a.tel")
    assert tel.get_attribute("href") == "tel:+8613800000001"
    group = page.locator("#alert-list li.fire-group[data-unit=u1][data-count='2']")
    group.wait_for(timeout=WAIT_MS)
    assert group.locator("li.alert.fire").count() == 2
    assert "2 detectors alarming" in group.inner_text()

    # That click let sound play: the banner went. After a reload sound is off again, and the
    # banner says so until a click on it (or anywhere).
    page.wait_for_selector("body[data-sound=on]", timeout=WAIT_MS)
    assert page.locator("#sound-banner").count() == 0
    page.reload()
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    _wait_sound_banner(page, errors)
    page.wait_for_selector("#fire-banner .fire-entry", timeout=WAIT_MS)
    page.click("#sound-banner")
    page.wait_for_selector("body[data-sound=on]", timeout=WAIT_MS)
    assert page.locator("#sound-banner").count() == 0

    # Acknowledged, the alarm leaves the banner (it no longer needs someone to take it).
    for li in page.locator("#alert-list li.alert.fire").all():
        li.locator("button[data-action=ack]").click()
    page.wait_for_selector("#fire-banner", state="detached", timeout=WAIT_MS)
    assert errors == []


def test_a_false_alarm_cannot_be_closed_without_a_chosen_cause(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """The close dialog preselects nothing: Confirm is disabled until a verification is chosen
    and, for a false alarm, a cause; the cause picked is the one recorded."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "operator", "Li (control room)"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    _fire(pub, prefix, 1, 1, 7, "3F smoke")
    fire = page.locator("#alert-list li.alert.fire")
    fire.wait_for(timeout=WAIT_MS)
    fire.locator("button[data-action=close]").click()
    confirm = page.locator("#close-confirm")
    assert confirm.is_disabled()
    page.check("#close-dialog input[value=false_alarm]")
    assert page.locator("#close-cause").input_value() == ""
    assert confirm.is_disabled()
    confirm.click(force=True)  # a disabled button does nothing
    assert page.locator("#close-dialog[open]").count() == 1
    page.select_option("#close-cause", "equipment_fault")
    assert confirm.is_enabled()
    page.check("#close-dialog input[value=confirmed_fire]")
    assert confirm.is_enabled() and page.locator(".cause-row").is_hidden()
    page.check("#close-dialog input[value=false_alarm]")
    confirm.click()
    page.wait_for_selector("#alert-list li.alert.fire", state="detached", timeout=WAIT_MS)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT verification, false_alarm_cause FROM alerts").fetchone()
    assert row == ("false_alarm", "equipment_fault")
    assert errors == []


@pytest.fixture()
def centre_119() -> Iterator[WebhookReceiver]:
    """A fake 119 command centre's receiver."""
    r = WebhookReceiver(b"secret-of-119").start()
    yield r
    r.stop()


def test_a_fire_alarm_verified_on_the_board_is_forwarded_to_119_and_the_alert_says_so(
    browser: Any,
    db: Endpoints,
    prefix: str,
    pub: Publisher,
    fleet: dict[str, Any],
    centre_119: WebhookReceiver,
) -> None:
    """Verify (without closing) asks for confirmed fire or false alarm; a confirmed fire goes
    to 119, and the alert's detail shows when 119 took it; closing then asks nothing again."""
    settings = engine_settings(
        prefix,
        f"ingest-{time.monotonic_ns()}",
        notify={"fire_119": {"url": centre_119.url, "secret": "secret-of-119"}},
    )
    engine = Engine(settings, db)
    engine.start()
    server = ApiServer(api_options(db, fire_119=Fire119Options(receiver="119")), "127.0.0.1", 0)
    server.start()
    try:
        assert engine.consumer.wait_connected(10), "engine did not connect to the broker"
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        errors = _watch_errors(page)
        page.goto(server.url + "/#token=" + token(db, "operator", "Li (control room)"))
        page.wait_for_selector("#conn.live", timeout=WAIT_MS)
        _fire(pub, prefix, 1, 1, 7, "3F smoke")
        fire = page.locator("#alert-list li.alert.fire")
        fire.wait_for(timeout=WAIT_MS)
        fire.click()
        fire.locator("button[data-action=verify]").click()
        confirm = page.locator("#close-confirm")
        assert confirm.is_disabled()
        page.check("#close-dialog input[value=confirmed_fire]")
        confirm.click()
        assert centre_119.wait_for(lambda got: len(got) == 1, 10), "119 heard nothing"
        page.wait_for_selector("#detail .fire-119.sent", timeout=WAIT_MS)
        page.wait_for_selector("#detail .history li[data-kind=forwarded_119]", timeout=WAIT_MS)
        assert page.locator("#alert-list li.alert.fire button[data-action=verify]").count() == 0
        fire.locator("button[data-action=close]").click()
        assert page.locator("#close-dialog fieldset").is_hidden()
        page.click("#close-confirm")
        page.wait_for_selector("#alert-list li.alert.fire", state="detached", timeout=WAIT_MS)
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT state, verification, verified_by FROM alerts").fetchone()
        assert row == ("closed", "confirmed_fire", "Li (control room)")
        assert errors == []
    finally:
        server.stop()
        engine.stop()


def test_a_closed_alert_is_found_with_its_whole_history_in_chinese(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """Search finds a closed fire alarm by unit, rule and state; its detail shows every step
    in Chinese words (受理, 关闭, 系统 for the engine), the cause in words, and no 'null'."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "operator", "Li (control room)"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    _fire(pub, prefix, 1, 1, 7, "3F smoke")
    fire = page.locator("#alert-list li.alert.fire")
    fire.wait_for(timeout=WAIT_MS)
    fire.locator("button[data-action=ack]").click()
    page.wait_for_selector("#alert-list li.alert.fire[data-state=acknowledged]", timeout=WAIT_MS)
    fire.locator("button[data-action=close]").click()
    page.check("#close-dialog input[value=false_alarm]")
    page.select_option("#close-cause", "dust_steam")
    page.click("#close-confirm")
    page.wait_for_selector("#alert-list li.alert.fire", state="detached", timeout=WAIT_MS)

    page.click("#lang")
    page.wait_for_selector("html[lang=zh-CN]")
    page.click("#nav a[data-view=search]")
    page.fill("#sr-unit", "u1")
    page.select_option("#sr-rule", "fire_alarm")
    page.select_option("#sr-state", "closed")
    page.click("#search-go")
    row = page.locator("#search-table tbody tr[data-state=closed]")
    row.wait_for(timeout=WAIT_MS)
    assert row.count() == 1 and "火警" in row.inner_text() and "已关闭" in row.inner_text()
    row.click()
    page.wait_for_selector("#detail .history li[data-kind=closed]", timeout=WAIT_MS)
    history = page.locator("#detail .history").inner_text()
    assert "受理" in history and "关闭" in history and "Li (control room)" in history
    assert "系统" in history and "engine" not in history
    assert "误报 · 粉尘或水汽" in history
    detail = page.locator("#detail").inner_text()
    assert "null" not in detail and "undefined" not in detail
    assert "粉尘或水汽" in detail and "已关闭" in detail
    page.screenshot(path=str(ARTIFACTS / "console-search-zh.png"))
    assert errors == []


def test_a_wall_screen_remembers_its_display_token_and_shows_the_board_only(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """A display token signed in with "remember on this screen" comes back signed in in a new
    tab (a rebooted screen), sees the board without actions or phone numbers, and is signed out
    when the token is revoked."""
    _add_people(db)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        row, secret = store_tokens.create_token(conn, "Wall screen 1", "display")
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    errors = _watch_errors(page)
    page.goto(api_server.url + "/")
    page.fill("#token-input", secret)
    page.check("#remember-screen")
    page.click("#sign-in")
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    page.close()

    screen = context.new_page()
    errors += _watch_errors(screen)
    screen.goto(api_server.url + "/")
    screen.wait_for_selector("#conn.live", timeout=WAIT_MS)
    views = screen.locator("#nav a").evaluate_all("els => els.map(e => e.dataset.view)")
    assert views == ["board"]
    _fire(pub, prefix, 1, 1, 7, "3F smoke")
    fire = screen.locator("#alert-list li.alert.fire")
    fire.wait_for(timeout=WAIT_MS)
    assert fire.locator("button").count() == 0
    screen.locator("#fire-banner button.open-alert").click()
    screen.wait_for_selector("#detail .contact", timeout=WAIT_MS)
    assert "Wang Fang" in screen.locator("#detail .contacts").inner_text()
    assert screen.locator("#detail a.tel").count() == 0
    assert "0001" not in screen.locator("#detail").inner_text()

    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        store_tokens.revoke(conn, row.id)
    screen.wait_for_selector("#token-input", timeout=WAIT_MS)
    assert screen.evaluate("localStorage.getItem('fs.token')") is None
    assert errors == []
    context.close()


def test_statistics_and_unit_events_in_chinese(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """The unit page lists the UTD's supervisory, shield, start and feedback events in words
    with loop, point and text; statistics show confirmed fires and false alarms apart."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "admin", "Admin Zhou"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    now = int(time.time() * 1000)
    for seq, (kind, loop, point, text) in enumerate(
        [
            ("supervisory", 1, 3, "B1 sprinkler valve"),
            ("shield", 2, 8, "2F smoke detector"),
            ("start", 3, 1, "smoke exhaust fan"),
            ("feedback", 3, 1, "smoke exhaust fan"),
        ],
        start=1,
    ):
        pub.publish(
            f"{prefix}/utd-1/event",
            {
                "ts": now - 60_000 + seq,
                "seq": seq,
                "kind": kind,
                "loop": loop,
                "point": point,
                "text": text,
            },
        )
    page.click("#lang")
    page.wait_for_selector("html[lang=zh-CN]")
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        page.goto(api_server.url + "/#/unit/u1")
        page.wait_for_selector("#unit-events p, #unit-events table", timeout=WAIT_MS)
        if page.locator("#events-table tr[data-kind=feedback]").count() == 1:
            break
        assert time.monotonic() < deadline, "the unit's events did not appear"
        page.wait_for_timeout(300)
    table = page.locator("#events-table").inner_text()
    for word in ("监管", "屏蔽", "启动", "反馈", "B1 sprinkler valve", "3 回路 1 号"):
        assert word in table, word

    _fire(pub, prefix, 10, 1, 7, "3F smoke")
    page.goto(api_server.url + "/#/board")
    fire = page.locator("#alert-list li.alert.fire")
    fire.wait_for(timeout=WAIT_MS)
    fire.locator("button[data-action=close]").click()
    page.check("#close-dialog input[value=confirmed_fire]")
    page.click("#close-confirm")
    page.wait_for_selector("#alert-list li.alert.fire", state="detached", timeout=WAIT_MS)
    page.click("#nav a[data-view=stats]")
    row = page.locator("#stats-table tr[data-key=u1]")
    row.wait_for(timeout=WAIT_MS)
    assert row.locator("td.confirmed").inner_text() == "1"
    assert row.locator("td.false-alarms").inner_text() == "0"
    assert "真实火警" in page.locator("#stats-table thead").inner_text()
    # Today's daily report downloads as a workbook that counts the confirmed fire.
    with page.expect_download() as got:
        page.click("#report-daily")
    assert got.value.suggested_filename == "firesentry-daily.xlsx"
    book = load_workbook(io.BytesIO(Path(got.value.path()).read_bytes()))
    rows = list(book["汇总 Summary"].iter_rows(values_only=True))
    assert rows[3][4] == "真实火警 Confirmed fires" and rows[4][:2] == ("D1", 1)
    assert rows[4][4] == 1
    assert errors == []


def test_board_in_chinese_with_two_detectors_of_one_unit_alarming(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """The zh-CN board with two detectors of one unit alarming: grouped, named in Chinese
    (紧急, 火警, 2 个探测器报警); with FIRESENTRY_SCREENSHOTS=1 it is docs/console-board-zh.png."""
    _add_people(db, "zh-CN")
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/")
    page.click("#lang")
    page.fill("#token-input", token(db, "operator", "李明（值班）"))
    page.click("#sign-in")
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    pub.publish(
        f"{prefix}/em-1/telemetry",
        {"ts": int(time.time() * 1000), "metrics": {"residual_current_ma": 365.0}},
    )
    _fire(pub, prefix, 1, 1, 7, "3F 东走廊 感烟探测器")
    _fire(pub, prefix, 2, 1, 9, "3F 西走廊 感烟探测器")
    group = page.locator("#alert-list li.fire-group[data-unit=u1][data-count='2']")
    group.wait_for(timeout=WAIT_MS)
    page.wait_for_selector("#alert-list li.alert[data-severity=major]", timeout=WAIT_MS)
    assert "2 个探测器报警" in group.inner_text()
    assert "紧急" in group.inner_text() and "火警" in group.inner_text()
    group.locator("li.alert.fire").first.click()
    page.wait_for_selector("#detail .history li[data-kind=opened]", timeout=WAIT_MS)
    assert "系统" in page.locator("#detail .history").inner_text()
    # Signing in was a click: sound is on, and no banner says otherwise.
    page.wait_for_selector("body[data-sound=on]", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "console-board-zh.png"))
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "console-board-zh.png"))
    else:
        print("FIRESENTRY_SCREENSHOTS is not 1: docs/console-board-zh.png left as it is")
    assert errors == []


def test_missing_chromium_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the chromium binary the browser tests skip with a reason that says how to get it."""
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "chromium")
    reason = _skip_reason()
    assert reason is not None and "apt-get install chromium" in reason


def test_map_and_unit_page_show_grades_and_print_a_notice(
    browser: Any, api_server: ApiServer, db: Endpoints
) -> None:
    """Units are filled by their four-colour grade on the map; the unit page says why and
    prints its 四色告知牌 with the QR code. FIRESENTRY_SCREENSHOTS=1 writes docs/ pictures."""
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute(
            "UPDATE units SET lat = 30.657, lon = 104.081, name = '滨江购物中心' WHERE id = 'u1'"
        )
        conn.execute(
            "INSERT INTO units (id, name, district, lat, lon, category, address) VALUES"
            " ('u2', '红星纺织厂', 'D1', 30.690, 104.120, 'factory', '成华区建设北路 88 号'),"
            " ('u3', '锦江区第三小学', 'D1', 30.642, 104.095, 'school', '锦江区书院街 3 号')"
        )
        conn.execute("INSERT INTO devices (id, unit_id, type) VALUES ('utd-2', 'u2', "
                     "'user_transmission_device'), ('utd-3', 'u3', 'user_transmission_device')")  # fmt: skip
        for dev, rule, hours_ago, lasted, ver in (
            ("utd-2", "panel_fault", 60, 36, None),
            ("utd-2", "fire_alarm", 20, 0.2, "confirmed_fire"),
            ("utd-3", "fire_alarm", 30, 0.2, "false_alarm"),
            ("utd-3", "fire_alarm", 50, 0.2, "false_alarm"),
            ("utd-3", "fire_alarm", 70, 0.2, "false_alarm"),
        ):
            opened = now - dt.timedelta(hours=hours_ago)
            ended = opened + dt.timedelta(hours=lasted)
            conn.execute(
                "INSERT INTO alerts (device_num, unit_id, rule_id, severity, state, opened_at,"
                " last_seen_at, cleared_at, closed_at, verification, needs_verification)"
                " SELECT num, unit_id, %s, 'major', 'closed', %s, %s, %s, %s, %s, %s"
                " FROM devices WHERE id = %s",
                (rule, opened, ended, ended, ended, ver, rule == "fire_alarm", dev),
            )
        graded = {g.unit_id: g.grade.value for g in grade_now(conn, load_model(), now).grades}
    assert graded == {"u1": "blue", "u2": "red", "u3": "yellow"}

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "operator", "Li (control room)"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    page.click("#lang")
    page.wait_for_selector("html[lang=zh-CN]")
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO hazards (unit_id, category, severity, description, source, found_by,"
            " deadline, overdue_at) VALUES ('u2', 'storage', 'major', 'x', 'person', 'Zhao',"
            " now() - interval '1 day', now())"
        )
    assert LEAFLET.exists(), f"{LEAFLET} is missing: make test installs libjs-leaflet"
    page.goto(api_server.url + "/#/map")
    for uid, grade in graded.items():
        page.wait_for_selector(
            f".leaflet-container path.unit-marker.unit-{uid}.grade-{grade}", timeout=WAIT_MS
        )
    # Layers: the overdue hazard at the plant, the density of hazards found; no tiles by
    # default (a closed network): nothing is fetched from anywhere.
    page.wait_for_selector(".leaflet-container path.hazard-ring.overdue.unit-u2", timeout=WAIT_MS)
    assert page.locator("img.leaflet-tile").count() == 0
    layers = page.locator(".leaflet-control-layers").inner_text()
    assert all(x in layers for x in ("单位风险等级", "离线设备", "未销案隐患", "隐患密度")), layers
    assert page.locator(".leaflet-container path.density").count() == 0  # off until asked
    page.locator(".leaflet-control-layers label", has_text="隐患密度").locator("input").check()
    page.wait_for_selector(".leaflet-container path.density.unit-u2", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "console-map-grades.png"))
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "console-map-grades.png"))

    page.goto(api_server.url + "/#/unit/u2")
    page.wait_for_selector("#unit-grade .grade-head .chip[data-grade=red]", timeout=WAIT_MS)
    reasons = page.locator("#unit-grade .grade-reasons li").all_inner_texts()
    assert reasons[0] == "7天内确认火灾1起", reasons
    assert page.locator("#unit-grade .grade-changes li").count() == 1
    # Print notice opens the notice in a tab of its own, drawn with its own styles (a blob
    # page would inherit the console's policy, which forbids inline styles: the band must be
    # in the grade's colour, not unstyled).
    with page.context.expect_page() as tab:
        page.click("#grade-notice")
    printed = tab.value
    printed.wait_for_selector(".notice[data-grade=red] .band", timeout=WAIT_MS)
    band = printed.evaluate("getComputedStyle(document.querySelector('.band')).backgroundColor")
    assert band == "rgb(217, 30, 24)", band
    printed.close()
    # The PDF button fetches the unit's A5 notice with the token (never in a URL).
    with page.expect_response(lambda r: r.url.endswith("/api/v1/units/u2/notice.pdf")) as got:
        page.click("#grade-notice-pdf")
    assert got.value.status == 200
    assert got.value.headers["content-type"] == "application/pdf"

    notice = browser.new_page(viewport={"width": 700, "height": 1000})
    notice.set_extra_http_headers({"Authorization": f"Bearer {token(db, 'operator', 'print')}"})
    notice.goto(api_server.url + "/api/v1/units/u2/notice")
    notice.wait_for_selector(".notice[data-grade=red] svg")
    assert "红色" in notice.locator(".band").inner_text()
    notice.screenshot(path=str(ARTIFACTS / "unit-notice.png"), full_page=True)
    if SCREENSHOTS:
        notice.screenshot(path=str(DOCS / "unit-notice.png"), full_page=True)
    assert errors == []


def test_a_grid_worker_reports_a_hazard_from_a_phone_and_a_supervisor_closes_it(
    browser: Any, api_server: ApiServer, db: Endpoints, tmp_path: Path
) -> None:
    """On a phone, the unit page's form reports a hazard with a photo from the camera (shrunk
    to JPEG before it goes up); the hazards view counts it per district, and a supervisor takes
    it through the steps its state allows to 销案."""
    from PIL import Image

    picture = tmp_path / "exit.png"
    Image.new("RGB", (3000, 2000), (200, 40, 40)).save(picture)
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    errors = _watch_errors(phone)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        grid_worker = store_tokens.create_token(conn, "Grid worker Zhao", "inspector", ["u1"])[1]
    phone.goto(api_server.url + "/#token=" + grid_worker)
    phone.wait_for_selector("#conn.live", timeout=WAIT_MS)
    phone.click("#lang")  # a grid worker reads Chinese
    phone.wait_for_selector("html[lang=zh-CN]")
    phone.goto(api_server.url + "/#/unit/u1")
    phone.wait_for_selector("#unit-hazards form.hazard-report", timeout=WAIT_MS)
    assert "上报隐患" in phone.locator("form.hazard-report").inner_text()
    phone.select_option("#hazard-category", "blocked_exit")
    phone.select_option("#hazard-severity", "major")
    phone.fill("#hazard-description", "B1 fire exit chained shut")
    phone.set_input_files("#hazard-photos", str(picture))
    if SCREENSHOTS:
        phone.locator("form.hazard-report").scroll_into_view_if_needed()
        phone.screenshot(path=str(DOCS / "hazard-report-phone.png"))
    phone.click("#hazard-report")
    phone.wait_for_selector("#unit-hazards tr[data-state=found]", timeout=WAIT_MS)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT h.found_by, p.content_type, length(p.data) FROM hazards h"
            " JOIN hazard_photos p ON p.hazard_id = h.id"
        ).fetchone()
    assert row is not None and row[:2] == ("Grid worker Zhao", "image/jpeg")
    assert row[2] < picture.stat().st_size  # shrunk on the phone before the upload
    assert errors == []

    page = browser.new_page(viewport={"width": 1600, "height": 900})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "supervisor", "Supervisor Sun"))
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    page.click("#nav a[data-view=hazards]")
    page.wait_for_selector("#hazard-counts tr[data-key=D1]", timeout=WAIT_MS)
    # Counted per person too: what each grid worker found.
    page.select_option("#hazard-group", "finder")
    page.wait_for_selector("#hazard-counts tr[data-key='Grid worker Zhao']", timeout=WAIT_MS)
    page.select_option("#hazard-group", "district")
    page.wait_for_selector("#hazard-counts tr[data-key=D1]", timeout=WAIT_MS)
    page.click("#hazards-table tr[data-state=found]")
    page.wait_for_selector("#hazard-detail img.hazard-photo[src^=blob]", timeout=WAIT_MS)
    for step in ("rectify", "submit", "review", "close"):
        if step == "submit":
            page.fill("#hazard-detail .step-comment", "chain removed")
        page.click(f"#hazard-detail button[data-step={step}]")
        page.wait_for_selector(
            f"#hazard-detail .hazard-history li[data-kind={_HAZARD_KIND[step]}]", timeout=WAIT_MS
        )
    # Closed: no step left, and the list (drawn again after the step) no longer holds it.
    page.wait_for_selector("#hazards-table tr[data-state]", state="detached", timeout=WAIT_MS)
    page.wait_for_selector("#hazard-detail .hazard-history li[data-kind=closed]", timeout=WAIT_MS)
    assert page.locator("#hazard-detail button.hstep").count() == 0
    assert "null" not in page.locator("#hazard-detail").inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-hazards.png"))
    if SCREENSHOTS:
        page.click("#lang")
        page.wait_for_selector("#hazard-detail .hazard-history li[data-kind=closed]")
        page.screenshot(path=str(DOCS / "console-hazards-zh.png"))
    assert errors == []


def test_a_grid_worker_scans_a_shops_code_and_records_an_inspection_on_a_phone(
    browser: Any, db: Endpoints, engine: Engine
) -> None:
    """The shop's printed code, read as a phone reads it, opens its public page; the link for
    inspectors leads (after signing in) to the unit with its code, where the checklist is
    marked as made at the unit. One item fails: the inspection is recorded as scanned and the
    failure is a hazard on the same page. Nothing scrolls sideways on the phone."""
    import socket
    import urllib.request

    import zxingcpp
    from PIL import Image

    # The server's own address is its public_url, as a city sets it: the codes point at it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    api_server = ApiServer(api_options(db, public_url=url), "127.0.0.1", port).start()
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        zhao = store_tokens.create_token(conn, "Grid worker Zhao", "inspector", ["u1"])[1]
    req = urllib.request.Request(
        api_server.url + "/api/v1/units/u1/qr.png", headers={"Authorization": f"Bearer {zhao}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        (code,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(r.read())))
    scanned = code.text
    assert scanned.startswith(url + "/u/")
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    errors = _watch_errors(phone)
    phone.goto(scanned)
    phone.click("a[href*='/code/']")
    phone.wait_for_selector("#token-input", timeout=WAIT_MS)
    phone.fill("#token-input", zhao)
    phone.click("#sign-in")
    phone.wait_for_selector("#inspection-at-unit", timeout=WAIT_MS)
    phone.click("#lang")
    phone.wait_for_selector("html[lang=zh-CN]")
    form = phone.locator("form.inspection-form")
    form.wait_for(timeout=WAIT_MS)
    assert "已扫本单位码进入" in form.inner_text()
    phone.check("fieldset[data-item=exits_clear] input[value=failed]")
    phone.fill("fieldset[data-item=exits_clear] .inspection-note", "后门被货架堵住")
    if SCREENSHOTS:
        # The form's head below the sticky top bar: "opened from the code", the failed item.
        phone.evaluate(
            "document.querySelector('form.inspection-form').scrollIntoView();"
            " window.scrollBy(0, -150)"
        )
        phone.screenshot(path=str(DOCS / "inspection-phone.png"))
    phone.click("#inspection-submit")
    phone.wait_for_selector("#inspection-list li.inspection[data-scanned=true]", timeout=WAIT_MS)
    phone.wait_for_selector("#unit-hazards tr[data-state=found]", timeout=WAIT_MS)
    assert "后门被货架堵住" in phone.locator("#inspection-list").inner_text()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT i.scanned, i.inspector, h.category, h.severity, h.found_by"
            " FROM inspections i JOIN hazards h ON h.id = ANY(i.hazard_ids)"
        ).fetchall()
    assert row == [(True, "Grid worker Zhao", "blocked_exit", "major", "Grid worker Zhao")]
    assert errors == [], "\n".join(errors)
    api_server.stop()


_HAZARD_KIND = {
    "rectify": "rectifying",
    "submit": "submitted",
    "review": "reviewed",
    "close": "closed",
}


def test_the_night_shift_hands_over_to_the_day_shift_in_the_duty_log(
    browser: Any, api_server: ApiServer, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """Go on duty, write a note, hand over with an open fire alarm; the day shift sees the
    handover note and that alarm among what was open."""
    _fire(pub, prefix, 1, 1, 7, "3F smoke")
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    errors = _watch_errors(page)
    page.goto(api_server.url + "/#token=" + token(db, "operator", "Night Li"))
    page.wait_for_selector("#alert-list li.alert.fire", timeout=WAIT_MS)
    page.click("#nav a[data-view=duty]")
    page.click("#duty-start")
    page.wait_for_selector("#duty .duty-mine[data-shift]", timeout=WAIT_MS)
    page.fill("#duty-note", "panel of u1 in test mode until 03:00")
    page.click("#duty-add-note")
    page.wait_for_selector("#duty .history li", timeout=WAIT_MS)
    page.click("#duty-end")  # nothing written: refused, still on duty
    assert page.locator("#duty-start").count() == 0
    page.fill("#duty-handover", "u1 fire alarm still to verify")
    page.fill("#duty-handed-to", "Day Wang")
    page.click("#duty-end")
    page.wait_for_selector("#duty-start", timeout=WAIT_MS)
    assert errors == []

    day = browser.new_page(viewport={"width": 1600, "height": 900})
    errors = _watch_errors(day)
    day.goto(api_server.url + "/#token=" + token(db, "operator", "Day Wang"))
    day.wait_for_selector("#conn.live", timeout=WAIT_MS)
    day.click("#nav a[data-view=duty]")
    day.wait_for_selector("#duty-last .handover-note", timeout=WAIT_MS)
    assert day.locator("#duty-last .handover-note").inner_text() == "u1 fire alarm still to verify"
    assert "Night Li" in day.locator("#duty-last").inner_text()
    assert day.locator("#duty-last .handover-open li a").count() == 1  # the open fire alarm
    assert day.locator("#duty-shifts tbody tr").count() == 1
    assert errors == []


class _Tiles:
    """A city's tile server on loopback: a 1×1 PNG for every /{z}/{x}/{y}.png, counted."""

    PNG = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
        b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
        b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )

    def __init__(self) -> None:
        tiles = self
        self.paths: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                tiles.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(tiles.PNG)))
                self.end_headers()
                self.wfile.write(tiles.PNG)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def test_the_map_draws_a_citys_own_tiles_and_pulses_a_live_fire_alarm(
    browser: Any, db: Endpoints, engine: Engine, prefix: str, pub: Publisher
) -> None:
    """With api.map_tiles set, the map's tiles come from that server (the page's security
    policy lets them in, and nothing else); a unit with a fire alarm open pulses."""
    assert LEAFLET.exists(), f"{LEAFLET} is missing: make test installs libjs-leaflet"
    tiles = _Tiles()
    server = ApiServer(
        api_options(db, map_tiles=MapTiles(tiles.url + "/{z}/{x}/{y}.png", "© City GIS")),
        "127.0.0.1",
        0,
    ).start()
    try:
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            conn.execute("UPDATE units SET lat = 30.657, lon = 104.081 WHERE id = 'u1'")
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = _watch_errors(page)
        page.goto(server.url + "/#token=" + token(db, "operator", "Li (control room)"))
        page.wait_for_selector("#conn.live", timeout=WAIT_MS)
        _fire(pub, prefix, 1, 1, 7, "3F smoke")
        page.wait_for_selector("#alert-list li.alert.fire", timeout=WAIT_MS)
        page.click("#nav a[data-view=map]")
        page.wait_for_selector(".leaflet-container path.unit-marker.unit-u1.fire", timeout=WAIT_MS)
        page.wait_for_selector(f"img.leaflet-tile[src^='{tiles.url}/']", timeout=WAIT_MS)
        page.wait_for_function(
            "() => [...document.querySelectorAll('img.leaflet-tile')].some((i) => i.complete "
            "&& i.naturalWidth === 1)",
            timeout=WAIT_MS,
        )
        assert tiles.paths and all(p.endswith(".png") for p in tiles.paths)
        assert "© City GIS" in page.locator(".leaflet-control-attribution").inner_text()
        assert errors == []
    finally:
        server.stop()
        tiles.stop()
