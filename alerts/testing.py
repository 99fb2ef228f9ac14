"""Local fake receivers and providers for tests and the demo: webhook, SMS, robots and SMTP.

Each listens on 127.0.0.1 with a port the system picks, in its own thread, checks requests the
way the real service does, records what it accepted, and can be told to fail or to be slow.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import re
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast
from urllib.parse import parse_qs, quote, urlsplit

import msgspec
from aiohttp import web

from alerts.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidDelivery, check

if TYPE_CHECKING:  # aiosmtpd is a dev dependency; `firesentry demo` imports this module too
    from aiosmtpd.smtp import SMTP, Envelope, Session

# --- the server thread every fake runs in ---------------------------------------------------


class _ServerThread:
    """An asyncio server on 127.0.0.1 in a thread of its own; subclasses open and close it."""

    thread_name = "fake-server"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0
        self.attempts = 0
        self.delay_s = 0.0

    async def _open(self) -> int:
        """Start listening on 127.0.0.1:0 and return the port."""
        raise NotImplementedError

    async def _close(self) -> None:
        """Stop listening and release what _open took."""

    def start(self) -> Self:
        """Start serving; returns self once the port is bound."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stopping = asyncio.Event()
            try:
                self.port = loop.run_until_complete(self._open())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=serve, name=self.thread_name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.thread_name} did not start")
        if failed:
            raise RuntimeError(f"{self.thread_name} did not start") from failed[0]
        return self

    def stop(self) -> None:
        """Stop serving; a request that is being delayed is answered 503 and not recorded."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._halt)
            thread.join(10)

    def _halt(self) -> None:
        assert self._stopping is not None and self._loop is not None
        self._stopping.set()
        self._loop.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each request (0: answer at once)."""
        self.delay_s = seconds

    async def _pause(self) -> bool:
        """Wait out the configured delay; True if the server is stopping meanwhile."""
        stopping = self._stopping
        assert stopping is not None
        if self.delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.delay_s)
        return stopping.is_set()


class _HttpServer(_ServerThread):
    """An aiohttp application served by a _ServerThread."""

    def __init__(self) -> None:
        super().__init__()
        self._runner: web.AppRunner | None = None

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _open(self) -> int:
        app = web.Application()
        self._routes(app)
        # Short: a test's teardown should not wait long for a request the fake is delaying.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        return int(runner.addresses[0][1])

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"


# --- the webhook receiver -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One POST the receiver accepted: signed, in the time window, with a key not seen before."""

    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    signature_ok: bool
    idempotency_key: str  # the signed body's, never the (unsigned) Idempotency-Key header


@dataclass(slots=True)
class _Behaviour:
    fail_next: list[int] = field(default_factory=list)  # statuses to answer before succeeding


class WebhookReceiver(_HttpServer):
    """Answers like a careful user's webhook: 401 unless signed and fresh, each body key once.

    A POST without a valid signature, or with a timestamp more than 300 s off, is answered 401
    and recorded only in `refused`; a replay of a key already processed (whatever its
    Idempotency-Key header says) is answered 200 `{"duplicate": true}` and not processed again.
    """

    thread_name = "webhook-receiver"

    def __init__(self, secret: bytes, on_receive: Callable[[Received], None] | None = None) -> None:
        super().__init__()
        if not secret:
            raise ValueError("a webhook receiver needs the secret its deliveries are signed with")
        self.secret = secret
        self.on_receive = on_receive
        self.received: list[Received] = []
        self.refused: list[str] = []  # the reason of each POST answered 401/400
        self._keys: set[str] = set()
        self.behaviour = _Behaviour()

    @property
    def url(self) -> str:
        """The URL to configure as a webhook receiver."""
        return f"{self.base_url}/hook"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._handle)

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses, in order."""
        with self._lock:
            self.behaviour.fail_next.extend(statuses)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._lock:
            self.attempts += 1
            status = self.behaviour.fail_next.pop(0) if self.behaviour.fail_next else 200
        if await self._pause():
            return web.Response(status=503, text="shutting down")
        if status != 200:
            return web.Response(status=status, text="injected failure")
        headers = dict(request.headers)
        try:
            key = check(
                self.secret, headers.get(TIMESTAMP_HEADER), raw, headers.get(SIGNATURE_HEADER)
            )
        except InvalidDelivery as exc:
            with self._lock:
                self.refused.append(exc.reason)
            return web.json_response({"ok": False, "error": exc.reason}, status=exc.status)
        item = Received(msgspec.json.decode(raw), raw, headers, True, key)
        with self._cond:
            duplicate = key in self._keys
            if not duplicate:
                self._keys.add(key)
                self.received.append(item)
            self._cond.notify_all()
        if not duplicate and self.on_receive is not None:
            self.on_receive(item)
        return web.json_response({"ok": True, "duplicate": duplicate})

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Wait until the received list satisfies predicate, or the timeout passes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.received), timeout)


# --- fake providers: the common part --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One request a fake provider accepted (and would have delivered)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class _Injected:
    status: int | None = None  # an HTTP status to answer with
    code: int | str | None = None  # or a provider error code


class _FakeProvider(_HttpServer):
    """Records accepted requests; answers injected failures first."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ProviderRequest] = []
        self.refused: list[str] = []  # why requests were refused (bad signature, …)
        self._injected: list[_Injected] = []

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses, in order."""
        with self._lock:
            self._injected.extend(_Injected(status=s) for s in statuses)

    def reject_next(self, *codes: int | str) -> None:
        """Answer the next requests with these provider error codes, in order."""
        with self._lock:
            self._injected.extend(_Injected(code=c) for c in codes)

    @property
    def keys(self) -> list[str]:
        """Idempotency keys of the accepted requests, in order (repeats included)."""
        with self._lock:
            return [r.idempotency_key for r in self.requests]

    def duplicate_keys(self) -> set[str]:
        """Keys accepted more than once: the same notification delivered twice."""
        return {k for k, n in Counter(self.keys).items() if n > 1}

    def wait_for(self, predicate: Callable[[list[ProviderRequest]], bool], timeout: float) -> bool:
        """Wait until the accepted requests satisfy predicate, or the timeout passes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.requests), timeout)

    async def _begin(self) -> web.Response | None:
        """Count the attempt, wait out any delay; the injected failure to answer with, if any."""
        with self._lock:
            self.attempts += 1
            injected = self._injected.pop(0) if self._injected else None
        if await self._pause():
            return web.Response(status=503, text="shutting down")
        return None if injected is None else self._injected_response(injected)

    def _injected_response(self, injected: _Injected) -> web.Response:
        """How this provider answers a failure a test injected."""
        raise NotImplementedError

    def _refuse(self, why: str) -> None:
        with self._cond:
            self.refused.append(why)
            self._cond.notify_all()

    def _accept(self, request: web.Request, raw: bytes, body: dict[str, Any], key: str) -> None:
        item = ProviderRequest(
            request.path, dict(request.query), dict(request.headers), body, raw, key
        )
        with self._cond:
            self.requests.append(item)
            self._cond.notify_all()


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# --- generic SMS gateway --------------------------------------------------------------------


class FakeSmsGateway(_FakeProvider):
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

    def _injected_response(self, injected: _Injected) -> web.Response:
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
        body = _json_object(raw)
        if body is None or not all(isinstance(body.get(k), str) for k in ("to", "text", "id")):
            self._refuse("body is not {to, text, id}")
            return web.json_response({"error": "bad request"}, status=400)
        key = request.headers.get("Idempotency-Key") or body["id"]
        self._accept(request, raw, body, key)
        return web.json_response({"id": body["id"], "status": "accepted"})


# --- Alibaba Cloud SendSms ------------------------------------------------------------------


def _rfc3986(value: str) -> str:
    # quote() never escapes letters, digits and "_.-~"; with safe="" it escapes everything else.
    return quote(value, safe="")


class FakeAliyunSms(_FakeProvider):
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

    def _injected_response(self, injected: _Injected) -> web.Response:
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
        if _json_object(params.get("TemplateParam", "{}").encode()) is None:
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


# --- Twilio ---------------------------------------------------------------------------------


class FakeTwilio(_FakeProvider):
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

    def _injected_response(self, injected: _Injected) -> web.Response:
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
        self._accept(request, raw, form, key or request.headers.get("Idempotency-Key", ""))
        sid = "SM" + uuid.uuid4().hex
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


# --- group robots ---------------------------------------------------------------------------


class _FakeRobot(_FakeProvider):
    """A chat group robot: injected codes come back as its own error reply, with HTTP 200."""

    def _error(self, code: int, message: str) -> web.Response:
        raise NotImplementedError

    def _injected_response(self, injected: _Injected) -> web.Response:
        """An injected HTTP status as is; an injected code as the robot's error reply."""
        if injected.status is not None:
            return web.Response(status=injected.status, text="injected failure")
        return self._error(int(injected.code or 0), "injected")


class FakeWeCom(_FakeRobot):
    """WeCom group robots: POST /cgi-bin/webhook/send?key=…, errcode in the reply."""

    thread_name = "fake-wecom"
    max_bytes: ClassVar[dict[str, int]] = {"markdown": 4096, "text": 2048}

    def __init__(self, keys: Iterable[str]) -> None:
        super().__init__()
        self.robot_keys = set(keys)

    def robot_url(self, key: str) -> str:
        """The webhook URL of the robot with this key."""
        return f"{self.base_url}/cgi-bin/webhook/send?key={key}"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/cgi-bin/webhook/send", self._handle)

    def _error(self, code: int, message: str) -> web.Response:
        self._refuse(str(code))
        return web.json_response({"errcode": code, "errmsg": message})

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        failure = await self._begin()
        if failure is not None:
            return failure
        if request.query.get("key") not in self.robot_keys:
            return self._error(93000, "invalid webhook url")
        body = _json_object(raw)
        msgtype = body.get("msgtype") if body else None
        if body is None or msgtype not in self.max_bytes:
            return self._error(40008, "invalid message type")
        content = (body.get(str(msgtype)) or {}).get("content")
        if not isinstance(content, str) or not content:
            return self._error(44004, "empty content")
        if len(content.encode()) > self.max_bytes[str(msgtype)]:
            return self._error(45002, "content size out of limit")
        self._accept(request, raw, body, request.headers.get("Idempotency-Key", ""))
        return web.json_response({"errcode": 0, "errmsg": "ok"})


class FakeDingTalk(_FakeRobot):
    """DingTalk custom robots: POST /robot/send?access_token=…, signed with timestamp and sign."""

    thread_name = "fake-dingtalk"

    def __init__(self, robots: Mapping[str, str | None]) -> None:
        super().__init__()
        self.robots = dict(robots)  # access_token → secret (None: the robot is not signed)

    def robot_url(self, token: str) -> str:
        """The webhook URL of the robot with this access token."""
        return f"{self.base_url}/robot/send?access_token={token}"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/robot/send", self._handle)

    def _error(self, code: int, message: str) -> web.Response:
        self._refuse(str(code))
        return web.json_response({"errcode": code, "errmsg": message})

    def _signature_ok(self, secret: str, timestamp: str, sign: str) -> bool:
        try:
            age_ms = abs(time.time() * 1000 - int(timestamp))
        except ValueError:
            return False
        # The service accepts a timestamp within an hour of its clock.
        if age_ms > 3600 * 1000:
            return False
        mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
        return hmac.compare_digest(base64.b64encode(mac.digest()).decode(), sign)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        failure = await self._begin()
        if failure is not None:
            return failure
        token = request.query.get("access_token", "")
        if token not in self.robots:
            return self._error(300001, "token is not exist")
        secret = self.robots[token]
        if secret is not None and not self._signature_ok(
            secret, request.query.get("timestamp", ""), request.query.get("sign", "")
        ):
            return self._error(310000, "sign not match")
        body = _json_object(raw)
        msgtype = body.get("msgtype") if body else None
        if body is None or msgtype not in ("text", "markdown"):
            return self._error(40035, "invalid msgtype")
        part = body.get(str(msgtype)) or {}
        wanted = ("title", "text") if msgtype == "markdown" else ("content",)
        if not all(isinstance(part.get(k), str) and part.get(k) for k in wanted):
            return self._error(40035, f"missing {' or '.join(wanted)}")
        self._accept(request, raw, body, request.headers.get("Idempotency-Key", ""))
        return web.json_response({"errcode": 0, "errmsg": "ok"})


class FakeFeishu(_FakeRobot):
    """Feishu custom bots: POST /open-apis/bot/v2/hook/<id>, timestamp and sign in the body."""

    thread_name = "fake-feishu"

    def __init__(self, robots: Mapping[str, str | None]) -> None:
        super().__init__()
        self.robots = dict(robots)  # hook id → secret (None: the bot is not signed)

    def robot_url(self, hook: str) -> str:
        """The webhook URL of the bot with this hook id."""
        return f"{self.base_url}/open-apis/bot/v2/hook/{hook}"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/open-apis/bot/v2/hook/{hook}", self._handle)

    def _error(self, code: int, message: str, status: int = 200) -> web.Response:
        self._refuse(str(code))
        return web.json_response({"code": code, "data": {}, "msg": message}, status=status)

    def _signature_ok(self, secret: str, timestamp: Any, sign: Any) -> bool:
        try:
            age_s = abs(time.time() - int(timestamp))
        except (TypeError, ValueError):
            return False
        if age_s > 3600:
            return False
        key = f"{timestamp}\n{secret}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return isinstance(sign, str) and hmac.compare_digest(expected, sign)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        failure = await self._begin()
        if failure is not None:
            return failure
        hook = request.match_info["hook"]
        if hook not in self.robots:
            return self._error(19001, "param invalid: incoming webhook access token invalid", 400)
        body = _json_object(raw)
        if body is None:
            return self._error(9499, "Bad Request", 400)
        secret = self.robots[hook]
        if secret is not None and not self._signature_ok(
            secret, body.get("timestamp"), body.get("sign")
        ):
            return self._error(
                19021, "sign match fail or timestamp is not within one hour from current time"
            )
        msg_type = body.get("msg_type")
        if msg_type == "text":
            ok = bool((body.get("content") or {}).get("text"))
        elif msg_type == "interactive":
            ok = isinstance(body.get("card"), dict)
        else:
            ok = msg_type in ("post", "image", "share_chat")
        if not ok:
            return self._error(19002, "params error, msg_type need")
        self._accept(request, raw, body, request.headers.get("Idempotency-Key", ""))
        return web.json_response(
            {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}
        )


# --- SMTP -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the fake SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    tls: bool
    idempotency_key: str


class FakeSmtpServer(_ServerThread):
    """An SMTP server (aiosmtpd) that keeps messages instead of delivering them."""

    thread_name = "fake-smtp"

    def __init__(
        self, tls_context: ssl.SSLContext | None = None, require_starttls: bool = False
    ) -> None:
        super().__init__()
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.messages: list[ReceivedMail] = []
        self._data_replies: list[str] = []
        self._rcpt_replies: list[str] = []
        self._server: asyncio.Server | None = None

    async def _open(self) -> int:
        from aiosmtpd.smtp import SMTP

        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return SMTP(
                self,
                hostname="fake-smtp.test",
                tls_context=self.tls_context,
                require_starttls=self.require_starttls,
                loop=loop,
            )

        self._server = await loop.create_server(factory, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def fail_next(self, *replies: str) -> None:
        """Answer the next DATA commands with these replies, e.g. "451 4.3.0 Try again later"."""
        with self._lock:
            self._data_replies.extend(replies)

    def refuse_next_rcpt(self, *replies: str) -> None:
        """Answer the next RCPT TO commands with these replies, e.g. "550 5.1.1 No such user"."""
        with self._lock:
            self._rcpt_replies.extend(replies)

    @property
    def keys(self) -> list[str]:
        """Idempotency keys of the accepted messages, in order (repeats included)."""
        with self._lock:
            return [m.idempotency_key for m in self.messages]

    def wait_for(self, predicate: Callable[[list[ReceivedMail]], bool], timeout: float) -> bool:
        """Wait until the accepted messages satisfy predicate, or the timeout passes."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept the recipient unless told to refuse it."""
        with self._lock:
            reply = self._rcpt_replies.pop(0) if self._rcpt_replies else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message unless told to fail it."""
        with self._lock:
            self.attempts += 1
            reply = self._data_replies.pop(0) if self._data_replies else None
        if await self._pause():
            return "421 4.3.2 Shutting down"
        if reply is not None:
            return reply
        raw = cast(bytes, envelope.original_content or envelope.content or b"")
        message = BytesParser(policy=policy.default).parsebytes(raw)
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            message=message,
            raw=raw,
            tls=session.ssl is not None,
            idempotency_key=str(message.get("X-Firesentry-Idempotency-Key", "")),
        )
        with self._cond:
            self.messages.append(mail)
            self._cond.notify_all()
        return "250 2.0.0 Message accepted for delivery"
