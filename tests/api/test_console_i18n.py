"""The console's words (api/static/i18n.js, read as text): complete in zh-CN, in the project's
vocabulary, and naming every rule, metric, cause, event kind and role the server sends."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest

from alerts.actions import FALSE_ALARM_CAUSES
from alerts.shape import NoticeKind, Severity
from alerts.templates import TEMPLATES
from devices.catalog import METRICS, DeviceType, EventKind
from devices.records import Channel, Role
from rules.loader import load_rules

I18N = Path(__file__).resolve().parents[2] / "api" / "static" / "i18n.js"
_ENTRY = re.compile(r'^    ([a-z_0-9]+): ("(?:[^"\\]|\\.)*"),$', re.M)
# Names that are the same in every language.
SAME_IN_ALL = {"brand"}


def _block(text: str, opening: str) -> dict[str, str]:
    start = text.index(opening)
    end = text.index("\n  },", start)
    entries = {m.group(1): json.loads(m.group(2)) for m in _ENTRY.finditer(text[start:end])}
    assert entries, f"no entries found after {opening!r}: has i18n.js changed its layout?"
    return entries


@pytest.fixture(scope="module")
def strings() -> dict[str, dict[str, str]]:
    """The en and zh-CN tables of i18n.js."""
    text = I18N.read_text(encoding="utf-8")
    return {"en": _block(text, "  en: {\n"), "zh-CN": _block(text, '  "zh-CN": {\n')}


def test_every_english_entry_has_a_chinese_one_and_the_other_way_round(
    strings: dict[str, dict[str, str]],
) -> None:
    """No zh-CN entry is missing where en has one (nor the reverse), and each says something in
    Chinese rather than repeating the English."""
    en, zh = strings["en"], strings["zh-CN"]
    assert sorted(set(en) - set(zh)) == []
    assert sorted(set(zh) - set(en)) == []
    not_chinese = [
        k for k, v in zh.items() if k not in SAME_IN_ALL and not re.search(r"[\u4e00-\u9fff]", v)
    ]
    assert not_chinese == []


def test_severity_words_are_the_notifications_words(strings: dict[str, dict[str, str]]) -> None:
    """The console names each severity as the zh-CN messages do (alerts/templates.py)."""
    zh = strings["zh-CN"]
    for sev in typing.get_args(Severity):
        assert zh[f"severity_{sev}"] == TEMPLATES["zh-CN"][f"severity.{sev}"], sev


def test_the_project_vocabulary_is_used(strings: dict[str, dict[str, str]]) -> None:
    """受理 for acknowledge, 解除 for a manual resolve, 关闭 for close, 系统 for the engine,
    紧急/重要/警告/提示 for severities; 恢复 (a panel's reset) is never used, and 确认 only for
    the verification of a fire alarm."""
    zh = strings["zh-CN"]
    expected = {
        "severity_critical": "紧急",
        "severity_major": "重要",
        "severity_warning": "警告",
        "severity_info": "提示",
        "ack": "受理",
        "state_acknowledged": "已受理",
        "kind_acknowledged": "受理",
        "resolve": "解除",
        "state_resolved": "已解除",
        "close": "关闭",
        "state_closed": "已关闭",
        "actor_engine": "系统",
        "false_alarm": "误报",
        "confirmed_fire": "确认为真实火警",
        "verification": "火警确认",
    }
    assert {k: zh[k] for k in expected} == expected
    assert [k for k, v in zh.items() if "恢复" in v] == []
    misused = [k for k, v in zh.items() if re.search(r"(?<!火警)确认(?!为真实火警)", v)]
    assert misused == []


def test_every_name_the_server_sends_has_words_in_both_languages(
    strings: dict[str, dict[str, str]],
) -> None:
    """Rule ids (fallback names), metrics, false-alarm causes, event kinds, device types,
    contact roles, channels and notification kinds all have an entry in en and zh-CN."""
    keys = (
        [f"rule_{r.id}" for r in load_rules(None).rules]
        + [f"metric_{m.name}" for m in METRICS]
        + [f"cause_{c}" for c in FALSE_ALARM_CAUSES]
        + [f"event_{k.value}" for k in EventKind]
        + [f"type_{t.value}" for t in DeviceType]
        + [f"contact_role_{r}" for r in typing.get_args(Role)]
        + [f"channel_{c}" for c in (*typing.get_args(Channel), "webhook")]
        + [f"nkind_{k}" for k in typing.get_args(NoticeKind)]
    )
    for lang in ("en", "zh-CN"):
        assert [k for k in keys if k not in strings[lang]] == [], lang


def test_rule_fallbacks_match_the_rule_files_names(strings: dict[str, dict[str, str]]) -> None:
    """Where a rule has a name in the rule file, the console's fallback says the same."""
    for rule in load_rules(None).rules:
        if rule.name is not None:
            assert strings["zh-CN"][f"rule_{rule.id}"].replace(" ", "") == rule.name.zh_cn.replace(
                " ", ""
            ), rule.id
            assert strings["en"][f"rule_{rule.id}"] == rule.name.en, rule.id
