"""What the default rules and the templates say: truthful resolved texts, one vocabulary, and
the unit, address, location and detector in every fire-alarm message.

Notices come from the real planner over the real default rules; SMS and robot messages go
through the real channels to the fake providers, which speak the providers' HTTP APIs."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alerts.notify.sms import GenericHttpSms, GenericSmsOptions, SmsNotifier, sms_segments
from alerts.notify.wecom import WeComNotifier, WeComOptions
from alerts.planner import DispatchOptions, Snapshot, plan_transitions
from alerts.routing import load_routing
from alerts.templates import TEMPLATES, render
from alerts.types import Receiver
from devices.catalog import METRIC_BY_NAME, DeviceType
from devices.registry import Device, Registry
from rules.engine import Point, Transition
from rules.loader import load_rules
from rules.model import Rule
from simulators.services.robots import FakeWeCom
from simulators.services.sms import FakeSmsGateway
from tests.alerts.util import note

ROOT = Path(__file__).resolve().parents[2]
RULES = load_rules(None).rules
NOW = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)
T0 = int(NOW.timestamp() * 1000)
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "CST")
OPTS = DispatchOptions(load_routing(None), [Receiver("hook", "webhook")])
CHANNELS = ("sms", "wecom", "dingtalk", "feishu", "email")
PANEL_TEXT = "3F东走廊感烟探测器"


def _device(typ: DeviceType, num: int = 1, **kw: Any) -> Device:
    fields: dict[str, Any] = {
        "unit_name": "滨江花园商业广场",
        "district": "锦江区",
        "location": "B1 消防控制室",
        "unit_address": "成都市锦江区滨江东路 9 号",
    }
    fields.update(kw)
    return Device(num, f"dev-{num}", "u1", typ, **fields)


# A reading that breaches each kind of rule, the one that clears it, and the threshold.
_READINGS: dict[str, tuple[float, float, float]] = {
    "residual_current_ma": (412.0, 53.0, 300.0),
    "temp_c": (82.5, 41.5, 70.0),
    "voltage_v": (261.0, 221.0, 242.0),
    "battery_pct": (12.0, 87.0, 20.0),
    "tank_level_low": (1.9, 2.95, 2.55),
    "tank_level_critical": (1.2, 2.95, 1.5),
    "tank_overflow": (3.2, 2.95, 3.0),
    "pressure_low": (0.04, 0.34, 0.10),
    "pressure_high": (1.35, 0.34, 1.2),
    "pressure_falling_fast": (0.2, 0.01, 0.05),
}


def _readings(rule: Rule) -> tuple[float, float, float]:
    if rule.kind == "event":
        return 1.0, 0.0, 0.0
    if rule.kind == "deadman":
        return 240.0, 0.0, 180.0
    for key in (rule.id, rule.metric or ""):
        for prefix, values in _READINGS.items():
            if key.startswith(prefix):
                return values
    raise AssertionError(f"no readings for {rule.id}: add them to _READINGS")


def _notices(
    rule: Rule, device: Device, point: Point | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The firing and the resolved notice the planner makes when the rule breaches and clears."""
    breach, clear, threshold = _readings(rule)
    registry = Registry.of([device])
    opened = plan_transitions(
        [Transition(rule, device.num, T0, breach, threshold, True, point)],
        registry,
        Snapshot({}, range(1, 10)),
        OPTS,
        NOW,
    )
    [row] = opened.plan.inserts
    cleared = plan_transitions(
        [Transition(rule, device.num, T0 + 60_000, clear, threshold, False, point)],
        registry,
        Snapshot({(device.num, rule.id, row.point_key): row}),
        OPTS,
        NOW,
    )
    [firing] = [o.payload for o in opened.plan.outbox if o.channel == "webhook"]
    [resolved] = [o.payload for o in cleared.plan.outbox if o.channel == "webhook"]
    return firing, resolved


def _device_for(rule: Rule) -> Device:
    return _device(rule.device_type or DeviceType.WATER_PRESSURE)


# --- truthful texts -------------------------------------------------------------------------


def test_every_default_rule_has_a_name_and_a_resolved_text() -> None:
    """Each default rule says what operators call it and what it says when it clears."""
    missing = [r.id for r in RULES if r.name is None or r.resolved is None]
    assert not missing, f"rules without name or resolved: {missing}"
    for r in RULES:
        assert r.name is not None and r.resolved is not None
        assert all((r.name.en, r.name.zh_cn, r.resolved.en, r.resolved.zh_cn)), r.id


def test_chinese_texts_name_no_raw_metric_ids() -> None:
    """zh-CN names, messages and resolved texts say 第1路 or A相, never temp_c_1 or {metric}."""
    for r in RULES:
        assert r.name is not None and r.resolved is not None
        for text in (r.name.zh_cn, r.message.zh_cn, r.resolved.zh_cn):
            assert "{metric}" not in text, (r.id, text)
            assert not any(m in text for m in METRIC_BY_NAME), (r.id, text)
            assert not re.search(r"[a-z]+_[a-z0-9_]+", text.replace("{", " ")), (r.id, text)


# Words that state a breach; a resolved message must say none of them.
_BREACH_WORDS = {
    "zh-CN": ("超过", "低于", "高于", "异常", "离线", "溢流", "快速下降", "无数据", "检测到"),
    "en": (
        " above ",
        " below ",
        "out of range",
        "silent for",
        "FIRE ALARM",
        "falling ",
        "overflow:",
    ),
}


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_resolved_notices_say_back_to_normal_and_never_the_breach(rule: Rule) -> None:
    """The notice of a cleared condition, as SMS, robot and e-mail in both languages, says it
    is back to normal with the value that cleared it, never the breach or its wording."""
    firing, resolved = _notices(rule, _device_for(rule))
    assert resolved["status"] == "resolved"
    _, clear, _ = _readings(rule)
    assert rule.resolved is not None
    for locale, template, normal in (
        ("zh-CN", rule.resolved.zh_cn, "已恢复正常"),
        ("en", rule.resolved.en, "back to normal"),
    ):
        breach_text = firing["alert"]["message"][locale]
        spec = re.search(r"\{value(:[^}]*)?\}", template)
        for channel in CHANNELS:
            out = render("resolved", [resolved["alert"]], locale, channel, tz=SHANGHAI)
            whole = f"{out.title}\n{out.text}"
            assert normal in out.title, (channel, out.title)
            assert breach_text not in whole, (channel, whole)
            said = [w for w in _BREACH_WORDS[locale] if w in whole]
            assert not said, f"{rule.id} {locale} {channel} says {said}: {whole}"
            # 已恢复 alone reads as the panel's 复位: only ever 已恢复正常.
            assert locale == "en" or not re.search(r"已恢复(?!正常)", whole), whole
            if spec is not None:
                value = format(clear, (spec.group(1) or ":")[1:])
                assert value in whole, (channel, value, whole)


# --- one vocabulary -------------------------------------------------------------------------


def _console_strings(locale: str) -> dict[str, str]:
    """The console's interface strings of one locale, read from api/static/i18n.js."""
    source = (ROOT / "api/static/i18n.js").read_text(encoding="utf-8")
    start = source.index(f'"{locale}": {{' if "-" in locale else f"  {locale}: {{")
    block = source[start : source.index("\n  },", start)]
    return dict(re.findall(r'^\s+([a-z_]+): "([^"]*)",?$', block, re.MULTILINE))


def test_severity_words_are_the_consoles() -> None:
    """SMS, robots and e-mail call severities what the console does: 紧急, 重要, 警告, 提示."""
    console = _console_strings("zh-CN")
    expected = {"critical": "紧急", "major": "重要", "warning": "警告", "info": "提示"}
    for severity, word in expected.items():
        assert TEMPLATES["zh-CN"][f"severity.{severity}"] == word
        assert console[f"severity_{severity}"] == word, "api/static/i18n.js says otherwise"


def test_acknowledge_is_shouli_and_queren_is_left_to_verification() -> None:
    """Messages say 受理 for acknowledge; 确认 (fire-alarm verification) and 已恢复 alone, which
    reads as the panel's reset, appear in no template."""
    zh = TEMPLATES["zh-CN"]
    assert "受理" in zh["lead.escalation"] and "受理" in zh["title.reminder"]
    for key, text in zh.items():
        assert "确认" not in text, key
        assert not re.search(r"已恢复(?!正常)", text), key
    assert "back to normal" in TEMPLATES["en"]["title.resolved"]


# --- location and people in every message ---------------------------------------------------


def _fire_alarm() -> Rule:
    return next(r for r in RULES if r.id == "fire_alarm")


def test_fire_alarm_messages_name_unit_address_location_and_detector() -> None:
    """A fire alarm from a panel point says, on every channel, the unit, its address, the
    device's location and the detector (panel text, loop and point)."""
    device = _device(DeviceType.UTD)
    firing, _ = _notices(_fire_alarm(), device, Point(3, 17, PANEL_TEXT))
    a = firing["alert"]
    assert a["message"]["zh-CN"] == f"火警：滨江花园商业广场，{PANEL_TEXT}（dev-1）"
    for channel in CHANNELS:
        out = render("firing", [a], "zh-CN", channel, tz=SHANGHAI)
        whole = f"{out.title}\n{out.text}"
        assert out.title.startswith("【紧急】火警：滨江花园商业广场")
        for part in ("成都市锦江区滨江东路 9 号", "B1 消防控制室", PANEL_TEXT):
            assert part in whole, (channel, part, whole)
        if channel != "sms":
            assert "3回路17号" in whole, whole
    en = render("firing", [a], "en", "email").text
    assert "loop 3 point 17" in en and "Address:" in en


def test_a_panel_point_without_text_is_named_by_loop_and_point() -> None:
    """A point the panel gives no text for is called 3回路17号 / loop 3 point 17."""
    firing, _ = _notices(_fire_alarm(), _device(DeviceType.UTD), Point(3, 17))
    assert "3回路17号" in firing["alert"]["message"]["zh-CN"]
    assert "loop 3 point 17" in firing["alert"]["message"]["en"]
    assert "点位：" not in render("firing", [firing["alert"]], "zh-CN", "sms").text


def test_a_monitor_alert_says_where_the_device_is() -> None:
    """A metric alert (no panel point) carries the device's location and the unit's address."""
    rule = next(r for r in RULES if r.id == "residual_current_high")
    firing, _ = _notices(rule, _device(DeviceType.ELECTRICAL, location="2F 配电间"))
    sms = render("firing", [firing["alert"]], "zh-CN", "sms").text
    assert "位置：2F 配电间" in sms and "地址：成都市锦江区滨江东路 9 号" in sms
    assert sms.startswith("【重要】剩余电流 412 mA，超过限值 300 mA：滨江花园商业广场")


def test_a_spreading_fire_says_so_in_the_title() -> None:
    """The second detector alarming at a unit is titled 【火警·第2个探测器】 / [FIRE, 2nd …]."""
    device = _device(DeviceType.UTD)
    a = {**_notices(_fire_alarm(), device, Point(3, 17, PANEL_TEXT))[0]["alert"]}
    a["unit_fire_alarms"] = 2
    assert render("firing", [a], "zh-CN", "sms").title.startswith("【火警·第2个探测器】火警：")
    assert render("firing", [a], "en", "wecom").title.startswith("[FIRE, 2nd detector] FIRE")
    assert "火情可能正在蔓延" in render("firing", [a], "zh-CN", "feishu").text
    a["unit_fire_alarms"] = 1
    assert render("firing", [a], "zh-CN", "sms").title.startswith("【紧急】火警：")
    a["unit_fire_alarms"] = 23
    assert "[FIRE, 23rd detector]" in render("firing", [a], "en", "sms").title


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_sms_with_long_names_fits_two_segments_and_keeps_fire_and_unit(locale: str) -> None:
    """Long unit name, address and panel text still make at most two segments; what is cut is
    the least important part, never the word 火警 (FIRE ALARM) or the unit's name."""
    unit = (
        "成都市锦江区滨江花园商业广场暨国际会议展览中心北区"
        if locale == "zh-CN"
        else ("Riverside Garden Shopping Plaza and International Convention and Exhibition Centre")
    )
    device = _device(
        DeviceType.UTD,
        unit_name=unit,
        unit_address="四川省成都市锦江区滨江东路与东大街交叉口东南角滨江花园商业广场一号楼",
        location="一号楼地下一层消防控制室（东侧值班室内）",
    )
    text = "三号楼十七层东侧走廊靠近消防电梯前室的点型光电感烟火灾探测器"
    firing, _ = _notices(_fire_alarm(), device, Point(3, 17, text))
    out = render("firing", [firing["alert"]], locale, "sms", tz=SHANGHAI)
    assert sms_segments(out.text) <= 2, (len(out.text), out.text)
    assert out.text.startswith("【紧急】火警：" if locale == "zh-CN" else "[critical] FIRE ALARM")
    assert unit in out.text
    if locale == "zh-CN":
        assert text in out.text and "地址：四川省" in out.text
    # The panel's text (the detector) outranks the address, which outranks the panel's place.
    assert "地址" not in out.text or text in out.text
    assert "位置" not in out.text or "地址" in out.text


async def test_fire_alarm_sms_and_robot_arrive_with_place_and_detector(
    session: aiohttp.ClientSession,
) -> None:
    """Rendered from the planner's notice, the SMS and the WeCom message reach the fakes with
    the unit, the address, the location and the detector in them."""
    firing, _ = _notices(_fire_alarm(), _device(DeviceType.UTD), Point(3, 17, PANEL_TEXT))
    sms = render("firing", [firing["alert"]], "zh-CN", "sms", tz=SHANGHAI)
    robot = render("firing", [firing["alert"]], "zh-CN", "wecom", tz=SHANGHAI)
    with FakeSmsGateway() as gateway, FakeWeCom(keys=["k1"]) as wecom:
        provider = GenericHttpSms(GenericSmsOptions(url=gateway.url, timeout_s=5), session)
        await SmsNotifier([provider]).send(note("sms", "+8613800138000", text=sms.text))
        robots = WeComOptions(robots={"centre": (wecom.robot_url("k1"), None)}, timeout_s=5)
        await WeComNotifier(robots, session).send(
            note("wecom", "centre", title=robot.title, text=robot.text)
        )
        texts = [gateway.requests[0].body["text"], wecom.requests[0].body["markdown"]["content"]]
    for text in texts:
        for part in ("火警", "滨江花园商业广场", "滨江东路 9 号", "B1 消防控制室", PANEL_TEXT):
            assert part in text, (part, text)
