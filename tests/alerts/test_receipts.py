"""Delivery receipts in each provider's format, and the signature Twilio puts on them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from alerts.notify.receipts import (
    BadReceipt,
    Receipt,
    aliyun_receipts,
    generic_receipts,
    twilio_receipt,
    twilio_signature,
)
from firesentry.config import SmsProviderConfig

KEY = "6f0c2a4e-8d1b-4c3e-9f7a-1b2c3d4e5f60"


def test_twilio_signature_matches_twilios_documented_example() -> None:
    """The example of Twilio's webhook security page: token 12345, its URL and parameters."""
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}  # fmt: skip
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_final_statuses_only() -> None:
    """delivered and undelivered are receipts; queued or sent are not; a failure says its code."""
    assert twilio_receipt({"MessageStatus": "sent"}, KEY) is None
    assert twilio_receipt({"MessageStatus": "delivered"}, KEY) == Receipt(KEY, True, "delivered")
    r = twilio_receipt({"MessageStatus": "undelivered", "ErrorCode": "30003"}, KEY)
    assert r is not None and not r.delivered and "30003" in r.error
    with pytest.raises(BadReceipt):
        twilio_receipt({"MessageStatus": "failed"}, None)


def test_aliyun_report_batch() -> None:
    """An SmsReport push: successes and failures by out_id; a message without one is skipped."""
    raw = json.dumps(
        [
            {"success": True, "err_code": "DELIVERED", "out_id": KEY},
            {"success": False, "err_code": "MK:0012", "err_msg": "手机关机", "out_id": "k2"},
            {"success": True, "err_code": "DELIVERED", "out_id": ""},
        ]
    ).encode()
    got = aliyun_receipts(raw)
    assert got[0] == Receipt(KEY, True, "DELIVERED")
    assert got[1] == Receipt("k2", False, "MK:0012", "MK:0012: 手机关机")
    assert len(got) == 2
    with pytest.raises(BadReceipt):
        aliyun_receipts(b'{"success": true}')


def test_generic_gateway_receipts() -> None:
    """One object or a list; interim statuses ignored; a receipt without an id is refused."""
    assert generic_receipts(b'{"id": "a", "status": "DELIVERED"}') == [
        Receipt("a", True, "delivered")
    ]
    assert generic_receipts(b'[{"id": "a", "status": "accepted"}]') == []
    got = generic_receipts(b'[{"id": "b", "status": "expired", "error": "no network"}]')
    assert got == [Receipt("b", False, "expired", "no network")]
    with pytest.raises(BadReceipt):
        generic_receipts(b'{"status": "delivered"}')
    with pytest.raises(BadReceipt):
        generic_receipts(b"not json")


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"kind": "generic", "url": "http://127.0.0.1:9/sms"}, "token"),
        (
            {
                "kind": "aliyun",
                "access_key_id": "a",
                "access_key_secret": "s",
                "sign_name": "n",
                "template_code": "t",
            },
            "receipt_token",
        ),
        (
            {"kind": "twilio", "account_sid": "AC1", "auth_token": "t", "from_number": "+1500"},
            "status_callback",
        ),
    ],
)
def test_receipts_need_what_authenticates_them(cfg: dict[str, str], field: str) -> None:
    """A provider that sends receipts needs the secret that proves them its own."""
    with pytest.raises(ValidationError, match=f"needs {field} \\(to take its delivery receipts"):
        SmsProviderConfig(**cfg, receipts=True)  # type: ignore[arg-type]
