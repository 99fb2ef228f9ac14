"""Fake chat group robots: WeCom, DingTalk and Feishu."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from aiohttp import web

from simulators.services.provider import FakeProvider, Injected, json_object


class _FakeRobot(FakeProvider):
    """A chat group robot: injected codes come back as its own error reply, with HTTP 200."""

    def _error(self, code: int, message: str) -> web.Response:
        raise NotImplementedError

    def _injected_response(self, injected: Injected) -> web.Response:
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
        body = json_object(raw)
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
        body = json_object(raw)
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
        body = json_object(raw)
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
