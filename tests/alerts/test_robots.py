"""WeCom, DingTalk and Feishu group robots against their fakes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from typing import Literal
from urllib.parse import parse_qs

import aiohttp
import pytest

from alerts.errors import PermanentError, RetryableError
from alerts.notify.dingtalk import DingTalkNotifier, DingTalkOptions, signed_url
from alerts.notify.feishu import FeishuNotifier, FeishuOptions
from alerts.notify.wecom import WeComNotifier, WeComOptions
from alerts.outbox import Notifier
from simulators.services.robots import FakeDingTalk, FakeFeishu, FakeWeCom
from tests.alerts.util import note

DING_SECRET = "SEC0123456789abcdef"
FEISHU_SECRET = "feishu-secret"


@pytest.fixture()
def wecom() -> Iterator[FakeWeCom]:
    """A fake WeCom with one robot."""
    with FakeWeCom(keys=["wk-1"]) as fake:
        yield fake


@pytest.fixture()
def dingtalk() -> Iterator[FakeDingTalk]:
    """A fake DingTalk with a signed and an unsigned robot."""
    with FakeDingTalk({"dt-signed": DING_SECRET, "dt-plain": None}) as fake:
        yield fake


@pytest.fixture()
def feishu() -> Iterator[FakeFeishu]:
    """A fake Feishu with one signed bot."""
    with FakeFeishu({"fs-1": FEISHU_SECRET}) as fake:
        yield fake


def wecom_notifier(
    fake: FakeWeCom,
    session: aiohttp.ClientSession,
    key: str = "wk-1",
    msgtype: Literal["markdown", "text"] = "markdown",
) -> WeComNotifier:
    """A WeCom notifier with robot "ops" pointed at the fake."""
    opts = WeComOptions(robots={"ops": (fake.robot_url(key), None)}, msgtype=msgtype, timeout_s=5)
    return WeComNotifier(opts, session)


def ding_notifier(
    fake: FakeDingTalk, session: aiohttp.ClientSession, secret: str | None = DING_SECRET
) -> DingTalkNotifier:
    """A DingTalk notifier with robots "ops" (signed) and "plain" pointed at the fake."""
    robots = {
        "ops": (fake.robot_url("dt-signed"), secret),
        "plain": (fake.robot_url("dt-plain"), None),
    }
    return DingTalkNotifier(DingTalkOptions(robots=robots, timeout_s=5), session)


def feishu_notifier(
    fake: FakeFeishu,
    session: aiohttp.ClientSession,
    secret: str = FEISHU_SECRET,
    timeout_s: float = 5,
) -> FeishuNotifier:
    """A Feishu notifier with bot "ops" pointed at the fake."""
    opts = FeishuOptions(robots={"ops": (fake.robot_url("fs-1"), secret)}, timeout_s=timeout_s)
    return FeishuNotifier(opts, session)


# --- WeCom ----------------------------------------------------------------------------------


async def test_wecom_posts_markdown_with_the_title(
    wecom: FakeWeCom, session: aiohttp.ClientSession
) -> None:
    """The robot gets a markdown message headed by the title, and the idempotency key header."""
    notifier: Notifier = wecom_notifier(wecom, session)
    n = note("wecom", "ops", title="【紧急】火警", text="**单位**: 3号楼")
    await notifier.send(n)
    [req] = wecom.requests
    assert req.body == {
        "msgtype": "markdown",
        "markdown": {"content": "### 【紧急】火警\n**单位**: 3号楼"},
    }
    assert wecom.keys == [n.idempotency_key]


async def test_wecom_clips_text_to_its_byte_limit(
    wecom: FakeWeCom, session: aiohttp.ClientSession
) -> None:
    """A text message longer than 2048 bytes is cut so that WeCom accepts it."""
    await wecom_notifier(wecom, session, msgtype="text").send(
        note("wecom", "ops", text="火" * 2000)
    )
    content = wecom.requests[0].body["text"]["content"]
    assert len(content.encode()) <= 2048 and content.endswith("…")


async def test_wecom_frequency_limit_and_5xx_are_retryable(
    wecom: FakeWeCom, session: aiohttp.ClientSession
) -> None:
    """errcode 45009 (20 a minute used up) and an HTTP 502 raise RetryableError."""
    wecom.reject_next(45009)
    wecom.fail_next(502)
    for match in ("45009", "502"):
        with pytest.raises(RetryableError, match=match):
            await wecom_notifier(wecom, session).send(note("wecom", "ops"))
    assert wecom.requests == []


async def test_wecom_invalid_key_and_unknown_robot_are_permanent(
    wecom: FakeWeCom, session: aiohttp.ClientSession
) -> None:
    """A robot key WeCom does not know (93000) and a robot name not configured raise PermanentError."""
    with pytest.raises(PermanentError, match="93000"):
        await wecom_notifier(wecom, session, key="revoked").send(note("wecom", "ops"))
    with pytest.raises(PermanentError, match="no WeCom robot named 'nobody'"):
        await wecom_notifier(wecom, session).send(note("wecom", "nobody"))


# --- DingTalk -------------------------------------------------------------------------------


async def test_dingtalk_signs_and_posts_markdown(
    dingtalk: FakeDingTalk, session: aiohttp.ClientSession
) -> None:
    """A signed robot gets timestamp and sign (checked by the fake) and a markdown message."""
    notifier: Notifier = ding_notifier(dingtalk, session)
    n = note("dingtalk", "ops", title="Fire alarm", text="**Unit**: 7")
    await notifier.send(n)
    [req] = dingtalk.requests
    assert {"timestamp", "sign"} <= set(req.query)
    assert req.body == {
        "msgtype": "markdown",
        "markdown": {"title": "Fire alarm", "text": "### Fire alarm\n\n**Unit**: 7"},
    }
    assert dingtalk.keys == [n.idempotency_key]
    await notifier.send(note("dingtalk", "plain"))
    assert "sign" not in dingtalk.requests[1].query


def test_dingtalk_sign_survives_url_encoding() -> None:
    """The sign in the URL decodes back to base64(HMAC-SHA256("<ts>\\n<secret>")) with its + and /."""
    url = signed_url("https://oapi.example.test/robot/send?access_token=t", "SECx", 1700000000123)
    query = parse_qs(url.raw_query_string)
    mac = hmac.new(b"SECx", b"1700000000123\nSECx", hashlib.sha256).digest()
    assert query["timestamp"] == ["1700000000123"]
    sign = base64.b64encode(mac).decode()
    assert "+" in sign and "/" in sign  # the characters a careless encoding would break
    assert query["sign"] == [sign]
    assert query["access_token"] == ["t"]


async def test_dingtalk_wrong_secret_is_permanent(
    dingtalk: FakeDingTalk, session: aiohttp.ClientSession
) -> None:
    """A request signed with the wrong secret is refused (310000) and raises PermanentError."""
    with pytest.raises(PermanentError, match="310000"):
        await ding_notifier(dingtalk, session, secret="SECwrong").send(note("dingtalk", "ops"))
    assert dingtalk.refused == ["310000"] and dingtalk.requests == []


async def test_dingtalk_throttling_is_retryable(
    dingtalk: FakeDingTalk, session: aiohttp.ClientSession
) -> None:
    """errcode 130101 (sending too fast) raises RetryableError."""
    dingtalk.reject_next(130101)
    with pytest.raises(RetryableError, match="130101"):
        await ding_notifier(dingtalk, session).send(note("dingtalk", "ops"))


# --- Feishu ---------------------------------------------------------------------------------


async def test_feishu_signs_and_posts_a_card(
    feishu: FakeFeishu, session: aiohttp.ClientSession
) -> None:
    """The bot gets timestamp and sign in the body (checked by the fake) and a markdown card."""
    notifier: Notifier = feishu_notifier(feishu, session)
    n = note("feishu", "ops", title="【紧急】火警", text="**单位**: 3号楼", severity="critical")
    await notifier.send(n)
    [req] = feishu.requests
    assert feishu.refused == [] and {"timestamp", "sign"} <= set(req.body)
    card = req.body["card"]
    assert req.body["msg_type"] == "interactive"
    assert card["header"]["title"]["content"] == "【紧急】火警"
    assert card["header"]["template"] == "red"
    assert card["elements"] == [{"tag": "markdown", "content": "**单位**: 3号楼"}]
    assert feishu.keys == [n.idempotency_key]


@pytest.mark.parametrize("code", [9499, 11232])
async def test_feishu_rate_limits_are_retryable(
    feishu: FakeFeishu, session: aiohttp.ClientSession, code: int
) -> None:
    """Feishu's rate-limit codes raise RetryableError."""
    feishu.reject_next(code)
    with pytest.raises(RetryableError, match=str(code)):
        await feishu_notifier(feishu, session).send(note("feishu", "ops"))


async def test_feishu_wrong_secret_is_permanent(
    feishu: FakeFeishu, session: aiohttp.ClientSession
) -> None:
    """A request signed with the wrong secret is refused (19021) and raises PermanentError."""
    with pytest.raises(PermanentError, match="19021"):
        await feishu_notifier(feishu, session, secret="wrong").send(note("feishu", "ops"))


async def test_feishu_slow_bot_times_out_as_retryable(
    feishu: FakeFeishu, session: aiohttp.ClientSession
) -> None:
    """A bot slower than the timeout raises RetryableError."""
    feishu.set_delay(5)
    with pytest.raises(RetryableError, match="timed out"):
        await feishu_notifier(feishu, session, timeout_s=0.2).send(note("feishu", "ops"))
