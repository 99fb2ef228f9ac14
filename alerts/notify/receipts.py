"""SMS delivery receipts as each provider sends them: parsed into one shape, authenticated.

A provider that accepted a message later says whether it reached the phone:
- Twilio POSTs a form to the message's StatusCallback (MessageStatus delivered, undelivered
  or failed; ErrorCode), signed in X-Twilio-Signature with the account's auth token. Our key
  rides in the callback URL's query (idempotency_key=), the only field Twilio echoes.
- Alibaba Cloud pushes SmsReport batches: a JSON array of {success, err_code, err_msg,
  out_id, …}; out_id is our key (sent as OutId). The push is not signed, so the URL set in
  the Aliyun console carries a secret: ?token=….
- A generic gateway POSTs {"id": key, "status": "delivered"|"failed"|…, "error": …} (or a
  list of them) with the gateway's bearer token.
Interim statuses (queued, sent, accepted) are no receipt: they are ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

_TWILIO_FINAL = {"delivered": True, "undelivered": False, "failed": False, "canceled": False}
_GENERIC_FINAL = {
    "delivered": True,
    "failed": False,
    "undelivered": False,
    "expired": False,
    "rejected": False,
}


class BadReceipt(ValueError):
    """A receipt body that is not in the provider's format."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a provider says became of one message: delivered, or not and why."""

    key: str
    delivered: bool
    status: str
    error: str = ""


def _json(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadReceipt("the body is not JSON") from None


def generic_receipts(raw: bytes) -> list[Receipt]:
    """Receipts of a generic gateway: an object or a list of {id, status, error}."""
    doc = _json(raw)
    items = doc if isinstance(doc, list) else [doc]
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise BadReceipt("each receipt needs a string id (the notification's key)")
        status = str(item.get("status", "")).lower()
        if status in _GENERIC_FINAL:
            out.append(
                Receipt(item["id"], _GENERIC_FINAL[status], status, str(item.get("error") or ""))
            )
    return out


def aliyun_receipts(raw: bytes) -> list[Receipt]:
    """Receipts of an Alibaba Cloud SmsReport push (a JSON array)."""
    doc = _json(raw)
    if not isinstance(doc, list):
        raise BadReceipt("an SmsReport push is a JSON array")
    out = []
    for item in doc:
        if not isinstance(item, dict) or not item.get("out_id"):
            continue  # a message sent without OutId is not ours to match
        ok = item.get("success") is True
        code = str(item.get("err_code") or ("DELIVERED" if ok else "UNKNOWN"))
        error = "" if ok else f"{code}: {item.get('err_msg') or ''}".strip(": ")
        out.append(Receipt(str(item["out_id"]), ok, code, error))
    return out


def twilio_receipt(form: Mapping[str, str], key: str | None) -> Receipt | None:
    """The receipt in a Twilio status callback; None for an interim status."""
    status = form.get("MessageStatus", "").lower()
    if status not in _TWILIO_FINAL:
        return None
    if not key:
        raise BadReceipt("the callback URL has no idempotency_key")
    code = form.get("ErrorCode", "")
    error = "" if _TWILIO_FINAL[status] else f"{status} (error {code or 'unknown'})"
    return Receipt(key, _TWILIO_FINAL[status], status, error)


def twilio_signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    """X-Twilio-Signature of a callback: HMAC-SHA1 of the URL followed by each POST
    parameter's name and value, sorted by name; base64."""
    data = url + "".join(k + form[k] for k in sorted(form))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def same_secret(given: str | None, expected: str) -> bool:
    """Compare a secret in constant time (an empty expected secret never matches)."""
    return bool(expected) and given is not None and hmac.compare_digest(given, expected)
