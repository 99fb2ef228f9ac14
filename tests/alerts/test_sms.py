"""SMS: segment counting, the three providers against their fakes, and failover."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import pytest
from structlog.testing import capture_logs

from alerts.errors import PermanentError, RetryableError
from alerts.notify.sms import (
    AliyunSms,
    AliyunSmsOptions,
    GenericHttpSms,
    GenericSmsOptions,
    SmsNotifier,
    SmsPart,
    TwilioSms,
    TwilioSmsOptions,
    fit_sms,
    fit_sms_parts,
    pop_signature,
    sms_segments,
)
from alerts.outbox import Notifier
from simulators.services.sms import FakeAliyunSms, FakeSmsGateway, FakeTwilio
from tests.alerts.util import note

PHONE = "+8613800138000"
AK_ID, AK_SECRET = "LTAI-test", "aliyun-secret"
SID, TOKEN = "AC" + "0" * 32, "twilio-token"


@pytest.fixture()
def gateway() -> Iterator[FakeSmsGateway]:
    """A generic gateway that wants a bearer token."""
    with FakeSmsGateway(token="gw-token") as fake:
        yield fake


@pytest.fixture()
def aliyun() -> Iterator[FakeAliyunSms]:
    """A fake Alibaba Cloud SMS endpoint."""
    with FakeAliyunSms(AK_ID, AK_SECRET) as fake:
        yield fake


@pytest.fixture()
def twilio() -> Iterator[FakeTwilio]:
    """A fake Twilio API."""
    with FakeTwilio(SID, TOKEN) as fake:
        yield fake


def generic(
    fake: FakeSmsGateway,
    session: aiohttp.ClientSession,
    token: str = "gw-token",
    timeout_s: float = 5,
) -> GenericHttpSms:
    """A generic provider pointed at the fake."""
    opts = GenericSmsOptions(url=fake.url, token=token, timeout_s=timeout_s)
    return GenericHttpSms(opts, session)


def aliyun_sms(
    fake: FakeAliyunSms, session: aiohttp.ClientSession, secret: str = AK_SECRET
) -> AliyunSms:
    """An Aliyun provider pointed at the fake."""
    opts = AliyunSmsOptions(
        access_key_id=AK_ID,
        access_key_secret=secret,
        sign_name="消防监测",
        template_code="SMS_1234567",
        endpoint=fake.url,
        timeout_s=5,
    )
    return AliyunSms(opts, session)


def twilio_sms(fake: FakeTwilio, session: aiohttp.ClientSession, token: str = TOKEN) -> TwilioSms:
    """A Twilio provider pointed at the fake."""
    opts = TwilioSmsOptions(
        account_sid=SID,
        auth_token=token,
        from_number="+15005550006",
        base_url=fake.url,
        status_callback="https://hooks.example.test/twilio",
        timeout_s=5,
    )
    return TwilioSms(opts, session)


# --- segments -------------------------------------------------------------------------------


def test_segments_follow_gsm7_and_ucs2_limits() -> None:
    """GSM-7 takes 160 in one part and 153 a part after; UCS-2 takes 70 and 67."""
    assert [sms_segments("a" * n) for n in (1, 160, 161, 306, 307)] == [1, 1, 2, 2, 3]
    assert [sms_segments("火" * n) for n in (1, 70, 71, 134, 135)] == [1, 1, 2, 2, 3]
    assert sms_segments("€" * 80) == 1 and sms_segments("€" * 81) == 2  # two septets each


def test_fit_sms_keeps_chinese_within_two_segments() -> None:
    """A long Chinese message is cut to two segments and ends with an ellipsis."""
    text = "火警：城东中学实验楼三层化学实验室（SD-0042）烟感报警，请立即处置。" * 6
    fitted = fit_sms(text)
    assert sms_segments(fitted) == 2
    assert fitted.endswith("…") and text.startswith(fitted[:-1])
    assert len(fitted) > 120  # the room was used, not wasted


def test_fit_sms_keeps_gsm_text_in_gsm() -> None:
    """An ASCII message is cut with "..." so that it stays GSM-7 and keeps 306 characters."""
    fitted = fit_sms("Smoke detected in building 7. " * 20)
    assert fitted.endswith("...") and sms_segments(fitted) == 2 and len(fitted) > 290
    assert fit_sms("short") == "short"


def test_fit_sms_parts_cuts_the_least_important_part_first() -> None:
    """Parts of higher rank are cut, then dropped, before a more important one loses a
    character; a part that cannot keep its head is dropped whole."""
    title = SmsPart("【紧急】火警：" + "城" * 30, 0, keep=20)
    location = SmsPart("位置：" + "层" * 60, 4, keep=7)
    address = SmsPart("地址：" + "路" * 60, 2, keep=7)
    text = fit_sms_parts([title, address, location], "；")
    assert sms_segments(text) == 2 and text.startswith(f"{title.text}；{address.text}；位置：层")
    assert text.endswith("…")  # the location is cut, the address whole
    address = SmsPart("地址：" + "路" * 100, 2, keep=7)
    text = fit_sms_parts([title, address, location], "；")
    assert sms_segments(text) == 2 and text.startswith(title.text + "；地址：路")
    assert "位置" not in text and text.endswith("…")  # the address cut, the location dropped
    short = [SmsPart("【紧急】火警：短", 0), SmsPart("地址：一号", 2)]
    assert fit_sms_parts(short, "；") == "【紧急】火警：短；地址：一号"
    lonely = fit_sms_parts([SmsPart("火" * 200, 0, keep=10)], "；")
    assert sms_segments(lonely) == 2 and lonely.endswith("…")


def test_pop_signature_matches_the_documented_example() -> None:
    """The POP signature reproduces the example in Alibaba Cloud's signature documentation."""
    params = {
        "TimeStamp": "2016-02-23T12:46:24Z",
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "Version": "2014-05-26",
        "SignatureVersion": "1.0",
    }
    assert pop_signature(params, "testsecret", "GET") == "CT9X0VtwR86fNWSnsc6v8YGOjuE="


# --- generic gateway ------------------------------------------------------------------------


async def test_generic_gateway_posts_json_with_token_and_key(
    gateway: FakeSmsGateway, session: aiohttp.ClientSession
) -> None:
    """The gateway gets {to, text, id}, the bearer token and the Idempotency-Key header."""
    await generic(gateway, session).send(PHONE, "火警", "key-1")
    [req] = gateway.requests
    assert req.body == {"to": PHONE, "text": "火警", "id": "key-1"}
    assert req.headers["Authorization"] == "Bearer gw-token"
    assert req.idempotency_key == "key-1"


async def test_generic_gateway_5xx_and_timeout_are_retryable(
    gateway: FakeSmsGateway, session: aiohttp.ClientSession
) -> None:
    """A 503 and a gateway slower than the timeout both raise RetryableError."""
    gateway.fail_next(503)
    with pytest.raises(RetryableError, match="503"):
        await generic(gateway, session).send(PHONE, "x", "k")
    gateway.set_delay(5)
    with pytest.raises(RetryableError, match="timed out"):
        await generic(gateway, session, timeout_s=0.2).send(PHONE, "x", "k")
    assert gateway.requests == []


async def test_generic_gateway_4xx_and_bad_token_are_permanent(
    gateway: FakeSmsGateway, session: aiohttp.ClientSession
) -> None:
    """A 400, and a 401 for a wrong token, raise PermanentError."""
    gateway.fail_next(400)
    with pytest.raises(PermanentError, match="400"):
        await generic(gateway, session).send(PHONE, "x", "k")
    with pytest.raises(PermanentError, match="401"):
        await generic(gateway, session, token="wrong").send(PHONE, "x", "k")
    assert gateway.refused == ["bad bearer token"]


# --- Aliyun ---------------------------------------------------------------------------------


async def test_aliyun_sends_a_signed_sendsms(
    aliyun: FakeAliyunSms, session: aiohttp.ClientSession
) -> None:
    """SendSms carries the phone without "+", the text as a template parameter and OutId = key."""
    await aliyun_sms(aliyun, session).send(PHONE, "火警：3号楼", "key-ali")
    [req] = aliyun.requests
    assert aliyun.refused == []  # the fake verified signature, timestamp and nonce
    assert req.body["Action"] == "SendSms" and req.body["PhoneNumbers"] == "8613800138000"
    assert req.body["SignName"] == "消防监测" and req.body["TemplateCode"] == "SMS_1234567"
    assert json.loads(req.body["TemplateParam"]) == {"content": "火警：3号楼"}
    assert req.body["OutId"] == req.idempotency_key == "key-ali"


async def test_aliyun_rejects_a_bad_signature_permanently(
    aliyun: FakeAliyunSms, session: aiohttp.ClientSession
) -> None:
    """A request signed with the wrong secret is refused and raises PermanentError."""
    with pytest.raises(PermanentError, match="SignatureDoesNotMatch"):
        await aliyun_sms(aliyun, session, secret="wrong").send(PHONE, "x", "k")
    assert aliyun.requests == [] and aliyun.refused == ["SignatureDoesNotMatch"]


@pytest.mark.parametrize("code", ["isv.BUSINESS_LIMIT_CONTROL", "Throttling.User"])
async def test_aliyun_flow_control_is_retryable(
    aliyun: FakeAliyunSms, session: aiohttp.ClientSession, code: str
) -> None:
    """Business flow control and API throttling raise RetryableError."""
    aliyun.reject_next(code)
    with pytest.raises(RetryableError, match=code):
        await aliyun_sms(aliyun, session).send(PHONE, "x", "k")


async def test_aliyun_other_isv_errors_are_permanent(
    aliyun: FakeAliyunSms, session: aiohttp.ClientSession
) -> None:
    """An isv.* error other than flow control (a bad number) raises PermanentError."""
    with pytest.raises(PermanentError, match=r"isv\.MOBILE_NUMBER_ILLEGAL"):
        await aliyun_sms(aliyun, session).send("+86abc", "x", "k")
    aliyun.reject_next("isv.AMOUNT_NOT_ENOUGH")
    with pytest.raises(PermanentError, match="AMOUNT_NOT_ENOUGH"):
        await aliyun_sms(aliyun, session).send(PHONE, "x", "k")


# --- Twilio ---------------------------------------------------------------------------------


async def test_twilio_creates_a_message_with_basic_auth(
    twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """The Messages resource gets To, From, Body and the key in the status callback URL."""
    await twilio_sms(twilio, session).send(PHONE, "Fire alarm", "key-tw")
    [req] = twilio.requests
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.body["To"] == PHONE and req.body["From"] == "+15005550006"
    assert req.body["Body"] == "Fire alarm"
    assert req.idempotency_key == "key-tw"


async def test_twilio_429_and_5xx_are_retryable(
    twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """Too many requests and a server error raise RetryableError."""
    twilio.reject_next(20429)
    twilio.fail_next(500)
    for status in ("429", "500"):
        with pytest.raises(RetryableError, match=status):
            await twilio_sms(twilio, session).send(PHONE, "x", "k")


async def test_twilio_bad_number_and_bad_token_are_permanent(
    twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """A 400 for an invalid number and a 401 for a wrong token raise PermanentError."""
    with pytest.raises(PermanentError, match="21211"):
        await twilio_sms(twilio, session).send("+0", "x", "k")
    with pytest.raises(PermanentError, match="401"):
        await twilio_sms(twilio, session, token="wrong").send(PHONE, "x", "k")
    assert twilio.refused == ["21211", "20003"]


# --- the channel ----------------------------------------------------------------------------


async def test_failover_to_the_second_provider_is_logged(
    aliyun: FakeAliyunSms, twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """When the first provider rejects its credentials, the second delivers and the log says so."""
    notifier: Notifier = SmsNotifier(
        [aliyun_sms(aliyun, session, secret="rotated"), twilio_sms(twilio, session)]
    )
    n = note("sms", PHONE)
    with capture_logs() as logs:
        await notifier.send(n)
    assert twilio.keys == [n.idempotency_key] and aliyun.requests == []
    delivered = [e for e in logs if e["event"] == "sms delivered"]
    assert delivered == [
        {
            "event": "sms delivered",
            "log_level": "info",
            "notification_id": n.id,
            "receiver": PHONE,
            "provider": "twilio",
            "failed_over": ["aliyun"],
            "segments": 1,
        }
    ]
    assert any(e["event"] == "sms provider failed" and e["provider"] == "aliyun" for e in logs)


async def test_first_provider_that_works_is_the_only_one_used(
    gateway: FakeSmsGateway, twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """A delivered message is not sent again through the next provider, nor twice."""
    notifier = SmsNotifier([generic(gateway, session), twilio_sms(twilio, session)])
    for _ in range(3):
        await notifier.send(note("sms", PHONE))
    assert len(gateway.keys) == 3 and gateway.duplicate_keys() == set()
    assert twilio.attempts == 0


async def test_all_failed_is_retryable_if_any_failure_was(
    gateway: FakeSmsGateway, twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    """One retryable and one permanent failure make RetryableError; two permanent, PermanentError."""
    notifier = SmsNotifier([generic(gateway, session), twilio_sms(twilio, session)])
    gateway.fail_next(503)
    twilio.fail_next(400)
    with pytest.raises(RetryableError, match=r"generic: HTTP 503.*twilio: Twilio HTTP 400"):
        await notifier.send(note("sms", PHONE))
    gateway.fail_next(403)
    twilio.fail_next(404)
    with pytest.raises(PermanentError, match="all SMS providers refused"):
        await notifier.send(note("sms", PHONE))


async def test_bad_number_is_permanent_without_asking_providers(
    gateway: FakeSmsGateway, session: aiohttp.ClientSession
) -> None:
    """A receiver that is not an E.164 number is refused before any provider is asked."""
    with pytest.raises(PermanentError, match=r"E\.164"):
        await SmsNotifier([generic(gateway, session)]).send(note("sms", "13800138000"))
    assert gateway.attempts == 0


async def test_notifier_fits_long_text_into_two_segments(
    gateway: FakeSmsGateway, session: aiohttp.ClientSession
) -> None:
    """Text longer than two segments is cut before it reaches the provider."""
    await SmsNotifier([generic(gateway, session)]).send(note("sms", PHONE, text="火警" * 200))
    assert sms_segments(gateway.requests[0].body["text"]) == 2
