"""Fake SMS providers: a generic HTTP gateway, Alibaba Cloud SendSms and Twilio."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from aiohttp import web

from simulators.services.provider import (
    FakeProvider,
    Injected,
    ProviderRequest,
    ReceiptPost,
    json_object,
)

# --- generic SMS gateway --------------------------------------------------------------------


class FakeSmsGateway(FakeProvider):
    """A generic HTTP SMS gateway: POST /sms with JSON {"to", "text", "id"}, bearer token."""

    thread_name = "fake-sms-gateway"

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token

    @property
    def url(self) -> str:
        """The URL to configure as GenericSmsOptions.url."""
        return f"{self.base_url}/sms"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/sms", self._handle)

    def _injected_response(self, injected: Injected) -> web.Response:
        """Answer an injected failure the way this provider does."""
        if injected.status is not None:
            return web.json_response({"error": "injected"}, status=injected.status)
        return web.json_response({"error": str(injected.code)}, status=422)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        failure = await self._begin()
        if failure is not None:
            return failure
        if (
            self.token is not None
            and request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            self._refuse("bad bearer token")
            return web.json_response({"error": "unauthorized"}, status=401)
        body = json_object(raw)
        if body is None or not all(isinstance(body.get(k), str) for k in ("to", "text", "id")):
            self._refuse("body is not {to, text, id}")
            return web.json_response({"error": "bad request"}, status=400)
        key = request.headers.get("Idempotency-Key") or body["id"]
        self._accept(request, raw, body, key)
        return web.json_response({"id": body["id"], "status": "accepted"})

    def _receipt(self, item: ProviderRequest, delivered: bool) -> ReceiptPost | None:
        """{"id", "status", "error"} with the gateway's bearer token, to receipts_to."""
        if self.receipts_to is None:
            return None
        body = {"id": item.body["id"], "status": "delivered" if delivered else "undelivered"}
        if not delivered:
            body["error"] = "absent subscriber"
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return ReceiptPost(self.receipts_to, headers, json.dumps(body).encode())


# --- Alibaba Cloud SendSms ------------------------------------------------------------------


def _rfc3986(value: str) -> str:
    # quote() never escapes letters, digits and "_.-~"; with safe="" it escapes everything else.
    return quote(value, safe="")


class FakeAliyunSms(FakeProvider):
    """Alibaba Cloud Dysmsapi SendSms: checks the HMAC-SHA1 signature, nonce and timestamp."""

    thread_name = "fake-aliyun-sms"
    max_skew = dt.timedelta(minutes=15)

    def __init__(self, access_key_id: str, access_key_secret: str) -> None:
        super().__init__()
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self._nonces: set[str] = set()

    @property
    def url(self) -> str:
        """The URL to configure as AliyunSmsOptions.endpoint."""
        return f"{self.base_url}/"

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/", self._handle)

    def _error(self, code: str, message: str, status: int) -> web.Response:
        self._refuse(code)
        return web.json_response(
            {"Code": code, "Message": message, "RequestId": str(uuid.uuid4()).upper()},
            status=status,
        )

    def expected_signature(self, params: Mapping[str, str], method: str) -> str:
        """Sign params the way the service does, to compare with the one sent."""
        pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
        canonical = "&".join(_rfc3986(k) + "=" + _rfc3986(v) for k, v in pairs)
        string_to_sign = "&".join([method.upper(), _rfc3986("/"), _rfc3986(canonical)])
        key = (self.access_key_secret + "&").encode()
        digest = hmac.new(key, string_to_sign.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def _injected_response(self, injected: Injected) -> web.Response:
        """Answer an injected failure the way this provider does."""
        if injected.status is not None:
            return self._error("ServiceUnavailable", "injected", injected.status)
        code = str(injected.code)
        # Business (isv.*) errors come with HTTP 200; gateway errors with a 4xx.
        return self._error(code, "injected", 200 if code.startswith("isv.") else 400)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        failure = await self._begin()
        if failure is not None:
            return failure
        params = dict(request.query)
        if request.method == "POST":
            form = parse_qs(raw.decode(), keep_blank_values=True)
            params.update({k: v[-1] for k, v in form.items()})
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "Action"):
            if not params.get(name):
                return self._error(f"Missing{name}", f"{name} is mandatory", 400)
        if params["AccessKeyId"] != self.access_key_id:
            return self._error(
                "InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404
            )
        expected = self.expected_signature(params, request.method)
        if not hmac.compare_digest(expected, params["Signature"]):
            return self._error("SignatureDoesNotMatch", "Specified signature is not matched.", 400)
        try:
            at = dt.datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC
            )
        except ValueError:
            return self._error("InvalidTimeStamp.Format", "Specified time stamp is invalid.", 400)
        if abs(dt.datetime.now(dt.UTC) - at) > self.max_skew:
            return self._error("InvalidTimeStamp.Expired", "Specified time stamp is expired.", 400)
        with self._lock:
            reused = params["SignatureNonce"] in self._nonces
            self._nonces.add(params["SignatureNonce"])
        if reused:
            return self._error("SignatureNonceUsed", "Specified signature nonce was used.", 400)
        if params["Action"] != "SendSms" or params.get("Version") != "2017-05-25":
            return self._error("InvalidAction.NotFound", "Specified api is not found.", 404)
        if not re.fullmatch(r"[0-9]{6,15}", params.get("PhoneNumbers", "")):
            return self._error("isv.MOBILE_NUMBER_ILLEGAL", "invalid mobile number", 200)
        if not params.get("SignName") or not params.get("TemplateCode"):
            return self._error("isv.SMS_TEMPLATE_ILLEGAL", "sign or template missing", 200)
        if json_object(params.get("TemplateParam", "{}").encode()) is None:
            return self._error("isv.INVALID_JSON_PARAM", "TemplateParam is not JSON", 200)
        self._accept(request, raw, params, params.get("OutId", ""))
        return web.json_response(
            {
                "Code": "OK",
                "Message": "OK",
                "BizId": f"{uuid.uuid4().int % 10**18}^0",
                "RequestId": str(uuid.uuid4()).upper(),
            }
        )

    def _receipt(self, item: ProviderRequest, delivered: bool) -> ReceiptPost | None:
        """An SmsReport push: a JSON array, to the URL set in the console (receipts_to)."""
        if self.receipts_to is None:
            return None
        now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
        report = {
            "phone_number": item.body.get("PhoneNumbers", ""),
            "send_time": now,
            "report_time": now,
            "success": delivered,
            "err_code": "DELIVERED" if delivered else "MK:0012",
            "err_msg": "用户接收成功" if delivered else "手机关机",
            "sms_size": "1",
            "biz_id": f"{uuid.uuid4().int % 10**18}^0",
            "out_id": item.body.get("OutId", ""),
        }
        data = json.dumps([report], ensure_ascii=False).encode()
        return ReceiptPost(self.receipts_to, {"Content-Type": "application/json"}, data)


# --- Twilio ---------------------------------------------------------------------------------


class FakeTwilio(FakeProvider):
    """Twilio's Messages resource: basic auth with the account SID and auth token."""

    thread_name = "fake-twilio"
    _CODE_STATUS: ClassVar[dict[int, int]] = {20003: 401, 20404: 404, 20429: 429, 20500: 500}

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token

    @property
    def url(self) -> str:
        """The URL to configure as TwilioSmsOptions.base_url."""
        return self.base_url

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._handle)

    def _error(self, code: int, message: str, status: int) -> web.Response:
        self._refuse(str(code))
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
        )

    def _injected_response(self, injected: Injected) -> web.Response:
        """Answer an injected failure the way this provider does."""
        if injected.status is not None:
            return self._error(20500, "injected", injected.status)
        code = int(injected.code or 0)
        return self._error(code, "injected", self._CODE_STATUS.get(code, 400))

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        failure = await self._begin()
        if failure is not None:
            return failure
        token = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {token}":
            return self._error(20003, "Authenticate", 401)
        if request.match_info["sid"] != self.account_sid:
            return self._error(20404, "The requested resource was not found", 404)
        form = {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        if not re.fullmatch(r"\+[1-9][0-9]{6,14}", form.get("To", "")):
            return self._error(21211, f"Invalid 'To' Phone Number: {form.get('To', '')}", 400)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return self._error(21603, "A 'From' phone number is required.", 400)
        if not form.get("Body"):
            return self._error(21602, "Message body is required.", 400)
        callback = form.get("StatusCallback", "")
        key = parse_qs(urlsplit(callback).query).get("idempotency_key", [""])[-1]
        sid = "SM" + uuid.uuid4().hex
        form["_sid"] = sid
        self._accept(request, raw, form, key or request.headers.get("Idempotency-Key", ""))
        return web.json_response(
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": form["To"],
                "from": form.get("From"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            },
            status=201,
        )

    def _receipt(self, item: ProviderRequest, delivered: bool) -> ReceiptPost | None:
        """A status callback to the message's StatusCallback, signed with the auth token."""
        url = str(item.body.get("StatusCallback", ""))
        if not url:
            return None
        form = {
            "AccountSid": self.account_sid,
            "MessageSid": str(item.body["_sid"]),
            "MessageStatus": "delivered" if delivered else "undelivered",
            "To": str(item.body.get("To", "")),
            "From": str(item.body.get("From", "")),
            "ApiVersion": "2010-04-01",
        }
        if not delivered:
            form["ErrorCode"] = "30003"  # Unreachable destination handset
        data = url + "".join(k + form[k] for k in sorted(form))
        mac = hmac.new(self.auth_token.encode(), data.encode(), hashlib.sha1)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": base64.b64encode(mac.digest()).decode(),
        }
        return ReceiptPost(url, headers, urlencode(form).encode())
