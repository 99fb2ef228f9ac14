"""Message rendering in zh-CN and en for SMS, robots and e-mail."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from alerts.notify.sms import GenericHttpSms, GenericSmsOptions, SmsNotifier, sms_segments
from alerts.templates import TEMPLATES, render, worst_first
from simulators.services.sms import FakeSmsGateway
from tests.alerts.util import note

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "CST")


def alert(
    id: int,
    severity: str = "critical",
    at: str = "2024-05-01T10:00:00.000+00:00",
    unit: str = "城东中学",
    **kw: Any,
) -> dict[str, Any]:
    """An alert shaped like the "alert" object of the webhook payload."""
    a: dict[str, Any] = {
        "id": id,
        "rule_id": "fire_alarm",
        "severity": severity,
        "device_id": f"SD-{id:03d}",
        "device_type": "smoke_detector",
        "unit_id": "U-7",
        "unit_name": unit,
        "metric": None,
        "value": None,
        "threshold": None,
        "at": at,
        "count": 1,
        "message": {
            "en": f"FIRE ALARM at Unit 7 (SD-{id:03d})",
            "zh-CN": f"火警：{unit}（SD-{id:03d}）",
        },
    }
    a.update(kw)
    return a


@pytest.fixture()
def gateway() -> Iterator[FakeSmsGateway]:
    """A generic SMS gateway."""
    with FakeSmsGateway() as fake:
        yield fake


def test_every_locale_has_the_same_templates() -> None:
    """zh-CN and en define the same keys, so no wording is missing in either language."""
    assert set(TEMPLATES["zh-CN"]) == set(TEMPLATES["en"])


def test_firing_in_both_locales_names_the_severity() -> None:
    """A firing alert's title carries the severity word of the locale and the rule's message."""
    zh = render("firing", [alert(1)], "zh-CN", "email", tz=SHANGHAI)
    en = render("firing", [alert(1, severity="major")], "en", "email")
    assert zh.title == "【紧急】火警：城东中学（SD-001）"
    assert en.title == "[major] FIRE ALARM at Unit 7 (SD-001)"
    assert re.search(r"\n时间: +2024-05-01 18:00:00 CST\n", zh.text)
    assert re.search(r"\n告警编号: +1\n", zh.text)
    assert re.search(r"\nTime: +2024-05-01 10:00:00 UTC\n", en.text)
    assert en.text.endswith("firesentry fire-safety monitoring")


@pytest.mark.parametrize(
    ("event", "zh_title", "en_title"),
    [
        ("resolved", "【已恢复正常】", "[back to normal] "),
        ("reminder", "【警告·未受理】", "[warning, still open] "),
        ("escalation", "【警告·已升级】", "[warning, escalated] "),
    ],
)
def test_other_events_have_their_own_titles(event: str, zh_title: str, en_title: str) -> None:
    """Resolved, reminder and escalation messages say so in the title, in both locales."""
    a = alert(1, severity="warning")
    assert render(event, [a], "zh-CN", "sms").title.startswith(zh_title)
    assert render(event, [a], "en", "sms").title.startswith(en_title)


def test_measured_values_are_shown_with_their_threshold() -> None:
    """An alert with a value shows metric, value and threshold."""
    a = alert(2, metric="residual_current_ma", value=412.5, threshold=300.0)
    email = render("firing", [a], "en", "email").text
    assert re.search(r"\nValue: +Residual current 412\.5 mA \(threshold 300 mA\)\n", email)
    assert (
        "**数值**: 剩余电流 412.5 mA（阈值 300 mA）" in render("firing", [a], "zh-CN", "wecom").text
    )


def test_group_lists_worst_first_then_newest() -> None:
    """A storm is one message, critical before major before warning before info, newest first."""
    alerts = [
        alert(1, "info", "2024-05-01T10:05:00+00:00"),
        alert(2, "critical", "2024-05-01T10:00:00+00:00"),
        alert(3, "warning", "2024-05-01T10:09:00+00:00"),
        alert(4, "critical", "2024-05-01T10:03:00+00:00"),
        alert(5, "major", "2024-05-01T10:01:00+00:00"),
    ]
    assert [a["id"] for a in worst_first(alerts)] == [4, 2, 5, 3, 1]
    out = render("group", alerts, "en", "dingtalk")
    assert out.title == "5 alerts at 城东中学"
    lines = out.text.split("\n\n")
    assert lines[0] == "5 alerts at 城东中学, most severe first:"
    assert [line.split("(SD-")[1][:3] for line in lines[1:]] == ["004", "002", "005", "003", "001"]
    assert lines[1].startswith("- [critical] FIRE ALARM")


def test_group_sms_in_chinese_fits_two_segments() -> None:
    """Seventeen alerts at one unit make one Chinese SMS of at most two segments, worst first."""
    alerts = [alert(i, "warning") for i in range(1, 17)] + [alert(17, "critical")]
    out = render("group", alerts, "zh-CN", "sms")
    assert out.title == "城东中学发生17条告警"
    assert out.text.startswith("城东中学发生17条告警：【紧急】火警：城东中学（SD-017）；【警告】")
    assert sms_segments(out.text) <= 2 and out.text.endswith("…")


def test_robots_get_markdown_and_email_gets_everything() -> None:
    """Robots get bold labels; e-mail lists every alert of a big storm, robots the first 20."""
    alerts = [alert(i, "major") for i in range(1, 31)]
    robot = render("group", alerts, "zh-CN", "wecom")
    assert robot.text.count("\n- ") == 20 and robot.text.endswith("……另有10条")
    email = render("group", alerts, "zh-CN", "email")
    assert email.text.count("【重要】") == 30
    assert "**单位**: 城东中学 (U-7)" in render("firing", [alerts[0]], "zh-CN", "feishu").text


def test_missing_message_falls_back_to_the_other_locale_then_rule() -> None:
    """An alert without a message in the locale uses the other one, then rule and device."""
    assert (
        render("firing", [alert(1, message={"en": "Smoke"})], "zh-CN", "sms").title
        == "【紧急】Smoke"
    )
    assert (
        render("firing", [alert(1, message={})], "en", "sms").title
        == "[critical] fire_alarm on SD-001"
    )


def test_unknown_event_is_an_error() -> None:
    """An event the templates do not know raises ValueError naming the known ones."""
    with pytest.raises(ValueError, match="firing, resolved"):
        render("exploded", [alert(1)], "en", "sms")


async def test_rendered_sms_arrives_as_rendered(
    gateway: FakeSmsGateway, session: aiohttp.ClientSession
) -> None:
    """A rendered SMS goes through the channel unchanged, already within two segments."""
    out = render("group", [alert(i) for i in range(1, 18)], "zh-CN", "sms")
    provider = GenericHttpSms(GenericSmsOptions(url=gateway.url, timeout_s=5), session)
    await SmsNotifier([provider]).send(
        note("sms", "+8613800138000", title=out.title, text=out.text)
    )
    assert gateway.requests[0].body["text"] == out.text
