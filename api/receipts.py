"""Delivery receipts from SMS providers: authenticated per provider, kept for the outbox."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl, quote

import structlog
from aiohttp import web

from alerts.notify.receipts import (
    BadReceipt,
    Receipt,
    aliyun_receipts,
    generic_receipts,
    same_secret,
    twilio_receipt,
    twilio_signature,
)
from api.auth import bearer
from api.models import ReceiptQuery, ReceiptsOut
from api.routing import PREFIX, ApiError, Call, Route, json_response, refuse
from api.state import ReceiptAuth
from store import receipts as store_receipts

log = structlog.get_logger("api")
BAD_RECEIPT_AUTH = "not a receipt of this provider (signature or token does not match)"


def _ours(receipts: list[Receipt], provider: str) -> list[Receipt]:
    """Receipts whose key can be one of our notifications' (a UUID); others are logged."""
    out = []
    for r in receipts:
        try:
            uuid.UUID(r.key)
        except ValueError:
            log.warning("delivery receipt with a key that is not ours", provider=provider)
            continue
        out.append(r)
    return out


def _twilio(call: Call, auth: ReceiptAuth, raw: bytes, key: str | None) -> list[Receipt]:
    form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    # Twilio signs the URL it called: the configured callback with our key appended, exactly
    # as alerts/notify/sms.py built it.
    sep = "&" if "?" in auth.callback_url else "?"
    url = f"{auth.callback_url}{sep}idempotency_key={quote(key or '')}"
    given = call.request.headers.get("X-Twilio-Signature")
    if not same_secret(given, twilio_signature(auth.secret, url, form)):
        raise refuse(call.request, "bad Twilio signature", BAD_RECEIPT_AUTH)
    receipt = twilio_receipt(form, key)
    return [] if receipt is None else [receipt]


async def sms_receipt(call: Call) -> web.StreamResponse:
    """POST /receipts/sms/{provider}."""
    name = call.request.match_info["provider"]
    auth = call.state.options.sms_receipts.get(name)
    if auth is None:
        raise ApiError(404, "not_found", f"no SMS provider named {name!r} sends receipts here")
    q = call.q(ReceiptQuery)
    raw = await call.request.read()
    try:
        if auth.kind == "twilio":
            receipts = _twilio(call, auth, raw, q.idempotency_key)
        elif auth.kind == "aliyun":
            if not same_secret(q.token, auth.secret):
                raise refuse(call.request, "bad receipt token", BAD_RECEIPT_AUTH)
            receipts = aliyun_receipts(raw)
        else:
            if not same_secret(bearer(call.request.headers.get("Authorization")), auth.secret):
                raise refuse(call.request, "bad receipt token", BAD_RECEIPT_AUTH)
            receipts = generic_receipts(raw)
    except BadReceipt as exc:
        raise ApiError(400, "bad_request", f"not a {auth.kind} receipt: {exc}") from None
    receipts = _ours(receipts, name)
    await call.state.db(lambda c: store_receipts.record(c, name, receipts))
    if auth.kind == "aliyun":
        # The answer Alibaba Cloud's push expects; anything else makes it push again.
        return web.json_response({"code": 0, "msg": "成功"})
    return json_response(ReceiptsOut(recorded=len(receipts)))


ROUTES = [
    Route(
        "POST",
        f"{PREFIX}/receipts/sms/{{provider}}",
        sms_receipt,
        "Delivery receipts of a configured SMS provider (Twilio status callbacks, Aliyun "
        "SmsReport pushes, a generic gateway's JSON), authenticated by the provider's own "
        "signature or secret instead of a token",
        None,
        "notifications",
        authenticated=False,
        query=ReceiptQuery,
        response=ReceiptsOut,
        path_params={"provider": "the provider's name under notify.sms"},
    ),
]
