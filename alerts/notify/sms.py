"""SMS channel: a provider interface, three providers, failover between them, segment fitting."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import aiohttp
import structlog

from alerts.errors import DeliveryError, PermanentError, RetryableError
from alerts.notify.http import (
    IDEMPOTENCY_HEADER,
    RETRYABLE_4XX,
    parse_json,
    raise_for_status,
    request,
)
from alerts.types import Notification

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Statuses that say "later might work"; every other 4xx means the request itself is wrong.

# GSM 03.38: the basic set costs one septet, the extension set two (escape + char).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("\f^{}\\[~]|€")


class SmsProvider(Protocol):
    """One SMS gateway: sends a text or raises RetryableError / PermanentError."""

    name: str

    async def send(self, phone: str, text: str, key: str) -> None:
        """Send text to phone (E.164); key identifies the notification across retries."""
        ...


# --- segments -------------------------------------------------------------------------------


def _costs(text: str) -> tuple[list[int], bool]:
    """Per-character cost in septets (GSM-7) or UTF-16 code units (UCS-2), and which it is."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        return [2 if c in _GSM_EXTENDED else 1 for c in text], True
    return [2 if ord(c) > 0xFFFF else 1 for c in text], False


def sms_segments(text: str) -> int:
    """How many SMS segments text takes (GSM-7: 160, or 153 each; UCS-2: 70, or 67 each)."""
    costs, gsm = _costs(text)
    single, part = (160, 153) if gsm else (70, 67)
    if sum(costs) <= single:
        return 1
    # Pack greedily: a phone never splits an escape sequence or a surrogate pair across parts.
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return segments


def fit_sms(text: str, max_segments: int = 2) -> str:
    """Return text unchanged if it fits max_segments, else cut it short with an ellipsis."""
    if sms_segments(text) <= max_segments:
        return text
    # "…" is not in GSM-7: adding it to a GSM text would halve the room by forcing UCS-2.
    ellipsis = "..." if _costs(text)[1] else "…"
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that still fits together with the ellipsis
        mid = (lo + hi + 1) // 2
        if sms_segments(text[:mid].rstrip() + ellipsis) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ellipsis


@dataclass(frozen=True, slots=True)
class SmsPart:
    """A piece of an SMS: parts with a higher rank are cut (then dropped) first.

    `keep` characters at the head of the part are never cut (the word 火警 and the unit);
    a part other than rank 0 that cannot keep them is dropped whole."""

    text: str
    rank: int = 0
    keep: int = 0


def fit_sms_parts(parts: Sequence[SmsPart], sep: str, max_segments: int = 2) -> str:
    """Join parts with sep within max_segments, cutting the least important parts first."""
    texts = [p.text for p in parts]

    def joined() -> str:
        return sep.join(t for t in texts if t)

    if sms_segments(joined()) <= max_segments:
        return joined()
    ellipsis = "..." if _costs(joined())[1] else "…"
    # Least important first; among equals the later part goes first (the end of a text).
    order = sorted(range(len(parts)), key=lambda i: (-parts[i].rank, -i))
    for i in order:
        part = parts[i]
        full = texts[i]
        texts[i] = ""
        if sms_segments(joined()) > max_segments:
            if part.rank > 0:
                continue  # dropping it was not enough: it stays dropped, cut the next one
            texts[i] = full
            break
        lo, hi = 0, len(full)
        while lo < hi:  # the longest head of this part that still fits
            mid = (lo + hi + 1) // 2
            texts[i] = full[:mid].rstrip() + ellipsis
            if sms_segments(joined()) <= max_segments:
                lo = mid
            else:
                hi = mid - 1
        if lo >= len(full):
            texts[i] = full
        elif lo >= max(part.keep, 1) or part.rank == 0:
            texts[i] = full[:lo].rstrip() + ellipsis
        else:
            texts[i] = ""
        return fit_sms(joined(), max_segments)
    # Even the most important part alone is too long: cut the whole text at the end.
    return fit_sms(joined(), max_segments)


# --- shared HTTP plumbing -------------------------------------------------------------------


# --- generic HTTP gateway -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GenericSmsOptions:
    """A gateway that takes POST {"to", "text", "id"} as JSON."""

    url: str
    token: str | None = None
    timeout_s: float = 10.0
    name: str = "generic"


class GenericHttpSms:
    """SMS through an in-house or third-party HTTP gateway."""

    def __init__(self, options: GenericSmsOptions, session: aiohttp.ClientSession) -> None:
        self.opts = options
        self.session = session
        self.name = options.name

    async def send(self, phone: str, text: str, key: str) -> None:
        """POST the message; 2xx is success."""
        headers = {IDEMPOTENCY_HEADER: key, "User-Agent": "firesentry/1"}
        if self.opts.token:
            headers["Authorization"] = f"Bearer {self.opts.token}"
        status, body = await request(
            self.session,
            "POST",
            self.opts.url,
            self.opts.timeout_s,
            json={"to": phone, "text": text, "id": key},
            headers=headers,
        )
        raise_for_status(status, body)


# --- Alibaba Cloud SMS (Dysmsapi 2017-05-25) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class AliyunSmsOptions:
    """Credentials and the approved signature and template of an Alibaba Cloud SMS account."""

    access_key_id: str
    access_key_secret: str
    sign_name: str
    template_code: str
    template_param: str = "content"  # the template variable that receives the text
    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    region_id: str = "cn-hangzhou"
    timeout_s: float = 10.0
    name: str = "aliyun"


def pop_encode(value: str) -> str:
    """Percent-encode as the POP API wants (RFC 3986: space is %20, ~ stays)."""
    return quote(value, safe="-_.~")


def pop_signature(params: Mapping[str, str], secret: str, method: str = "POST") -> str:
    """The HMAC-SHA1 signature (version 1.0) of an RPC-style Alibaba Cloud request."""
    canonical = "&".join(f"{pop_encode(k)}={pop_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{pop_encode('/')}&{pop_encode(canonical)}"
    mac = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def _aliyun_retryable(code: str) -> bool:
    # Flow control and server trouble pass; other isv.* (bad number, template, balance) do not.
    return (
        code == "isv.BUSINESS_LIMIT_CONTROL"
        or code.startswith("Throttling")
        or code in {"ServiceUnavailable", "InternalError", "isp.SYSTEM_ERROR", "SignatureNonceUsed"}
    )


class AliyunSms:
    """SMS through Alibaba Cloud SendSms; the idempotency key travels as OutId."""

    def __init__(self, options: AliyunSmsOptions, session: aiohttp.ClientSession) -> None:
        self.opts = options
        self.session = session
        self.name = options.name

    def signed_params(self, phone: str, text: str, key: str) -> dict[str, str]:
        """The full, signed parameter set of one SendSms call."""
        o = self.opts
        params = {
            "AccessKeyId": o.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": o.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            # Aliyun takes 86138... or international numbers without the leading "+".
            "PhoneNumbers": phone.removeprefix("+"),
            "SignName": o.sign_name,
            "TemplateCode": o.template_code,
            "TemplateParam": json.dumps({o.template_param: text}, ensure_ascii=False),
            "OutId": key,
        }
        params["Signature"] = pop_signature(params, o.access_key_secret, "POST")
        return params

    async def send(self, phone: str, text: str, key: str) -> None:
        """Call SendSms; Code "OK" is success, whatever the HTTP status says otherwise."""
        status, body = await request(
            self.session,
            "POST",
            self.opts.endpoint,
            self.opts.timeout_s,
            data=self.signed_params(phone, text, key),
            headers={IDEMPOTENCY_HEADER: key, "User-Agent": "firesentry/1"},
        )
        code = str(parse_json(body).get("Code", ""))
        if code == "OK":
            return
        if not code:
            raise_for_status(status, body)
            raise RetryableError(f"HTTP {status} without a Code: {body[:200]}")
        msg = f"Aliyun {code}: {parse_json(body).get('Message', '')}"[:300]
        if _aliyun_retryable(code) or status >= 500:
            raise RetryableError(msg)
        raise PermanentError(msg)


# --- Twilio ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwilioSmsOptions:
    """A Twilio account and the number (or Messaging Service) messages come from."""

    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    base_url: str = "https://api.twilio.com"
    status_callback: str | None = None  # receives the key back as ?idempotency_key=
    timeout_s: float = 10.0
    name: str = "twilio"


class TwilioSms:
    """SMS through Twilio's Messages resource (API 2010-04-01)."""

    def __init__(self, options: TwilioSmsOptions, session: aiohttp.ClientSession) -> None:
        if not (options.from_number or options.messaging_service_sid):
            raise ValueError("Twilio needs from_number or messaging_service_sid")
        self.opts = options
        self.session = session
        self.name = options.name

    async def send(self, phone: str, text: str, key: str) -> None:
        """Create a Message; 201 is success, 429 and 5xx are worth retrying."""
        o = self.opts
        form = {"To": phone, "Body": text}
        if o.messaging_service_sid:
            form["MessagingServiceSid"] = o.messaging_service_sid
        if o.from_number:
            form["From"] = o.from_number
        # Twilio has no idempotency parameter; the status callback is the only field it echoes.
        if o.status_callback:
            sep = "&" if "?" in o.status_callback else "?"
            form["StatusCallback"] = f"{o.status_callback}{sep}idempotency_key={quote(key)}"
        url = f"{o.base_url.rstrip('/')}/2010-04-01/Accounts/{o.account_sid}/Messages.json"
        status, body = await request(
            self.session,
            "POST",
            url,
            o.timeout_s,
            data=form,
            headers={
                # Built by hand: aiohttp.BasicAuth is deprecated and its successor is too new.
                "Authorization": "Basic "
                + base64.b64encode(f"{o.account_sid}:{o.auth_token}".encode()).decode(),
                IDEMPOTENCY_HEADER: key,
                "User-Agent": "firesentry/1",
            },
        )
        if 200 <= status < 300:
            return
        err = parse_json(body)
        msg = f"Twilio HTTP {status} code {err.get('code')}: {err.get('message', body[:200])}"
        if status >= 500 or status in RETRYABLE_4XX:
            raise RetryableError(msg)
        raise PermanentError(msg)


# --- the channel ----------------------------------------------------------------------------


class SmsNotifier:
    """Delivers notifications of channel 'sms', failing over through providers in order."""

    channel = "sms"

    def __init__(self, providers: Sequence[SmsProvider], max_segments: int = 2) -> None:
        if not providers:
            raise ValueError("SmsNotifier needs at least one provider")
        self.providers = list(providers)
        self.max_segments = max_segments

    async def send(self, n: Notification) -> None:
        """Send through the first provider that takes it; raise if none did."""
        # A fresh proxy per call so that log configuration changed after import still applies.
        log = structlog.get_logger("sms").bind(notification_id=n.id, receiver=n.receiver)
        phone = n.receiver.strip()
        if not E164.match(phone):
            raise PermanentError(f"{n.receiver!r} is not a phone number in E.164 form (+8613...)")
        text = fit_sms(str(n.payload.get("text", "")), self.max_segments)
        if not text:
            raise PermanentError("notification has no text to send")
        failures: list[tuple[str, DeliveryError]] = []
        for provider in self.providers:
            try:
                await provider.send(phone, text, n.idempotency_key)
            except DeliveryError as exc:
                # A provider that times out may still have delivered: a rare duplicate SMS is
                # better than a fire alarm that nobody receives.
                log.warning("sms provider failed", provider=provider.name, error=str(exc))
                failures.append((provider.name, exc))
                continue
            log.info(
                "sms delivered",
                provider=provider.name,
                failed_over=[name for name, _ in failures],
                segments=sms_segments(text),
            )
            return
        summary = "; ".join(f"{name}: {exc}" for name, exc in failures)
        if any(isinstance(exc, RetryableError) for _, exc in failures):
            raise RetryableError(f"all SMS providers failed: {summary}")
        raise PermanentError(f"all SMS providers refused: {summary}")
