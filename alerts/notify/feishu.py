"""Feishu / Lark (飞书) custom bot channel: JSON POSTs with the signature in the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from alerts.errors import PermanentError, RetryableError
from alerts.notify.http import IDEMPOTENCY_HEADER, parse_json, raise_unrecognised, request
from alerts.types import Notification

# 9499 "too many request" and 11232 "frequency limited": the bot's rate limit, it passes.
RETRYABLE_CODES = frozenset({9499, 11232})
# Card header colours by severity, so that a critical alarm stands out in the chat.
HEADER_COLOURS = {"critical": "red", "major": "orange", "warning": "yellow", "info": "blue"}


@dataclass(frozen=True, slots=True)
class FeishuOptions:
    """Bots by name → (webhook URL, signing secret or None)."""

    robots: Mapping[str, tuple[str, str | None]]
    msg_type: Literal["interactive", "text"] = "interactive"
    timeout_s: float = 10.0


def sign(secret: str, timestamp_s: str) -> str:
    """The bot signature: base64 of HMAC-SHA256 keyed by "<timestamp>\\n<secret>" over nothing."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def message_body(title: str, text: str, msg_type: str, severity: str | None) -> dict[str, Any]:
    """The JSON a Feishu bot takes for one message, without the signature."""
    if msg_type == "interactive":
        return {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": title},
                    "template": HEADER_COLOURS.get(severity or "", "blue"),
                },
                "elements": [{"tag": "markdown", "content": text}],
            },
        }
    return {"msg_type": "text", "content": {"text": f"{title}\n{text}"}}


class FeishuNotifier:
    """Delivers notifications of channel 'feishu' to configured custom bots."""

    channel = "feishu"

    def __init__(self, options: FeishuOptions, session: aiohttp.ClientSession) -> None:
        self.opts = options
        self.session = session

    async def send(self, n: Notification) -> None:
        """POST one message; code 0 (or StatusCode 0 from older bots) is success."""
        robot = self.opts.robots.get(n.receiver)
        if robot is None:
            raise PermanentError(f"no Feishu bot named {n.receiver!r} in the configuration")
        url, secret = robot
        severity = n.payload.get("severity")
        body = message_body(
            str(n.payload.get("title", "")),
            str(n.payload.get("text", "")),
            self.opts.msg_type,
            severity if isinstance(severity, str) else None,
        )
        if secret:
            ts = str(int(time.time()))
            body = {"timestamp": ts, "sign": sign(secret, ts), **body}
        # Feishu has no idempotency field; the header costs nothing and proxies can use it.
        status, text = await request(
            self.session,
            "POST",
            url,
            self.opts.timeout_s,
            json=body,
            headers={IDEMPOTENCY_HEADER: n.idempotency_key, "User-Agent": "firesentry/1"},
        )
        _check(status, text)


def _check(status: int, text: str) -> None:
    reply = parse_json(text)
    if "code" in reply or "StatusCode" in reply:
        code = reply.get("code", reply.get("StatusCode"))
        if code == 0:
            return
        msg = f"Feishu code {code}: {reply.get('msg', reply.get('StatusMessage', ''))}"[:300]
        if code in RETRYABLE_CODES or status >= 500 or status == 429:
            raise RetryableError(msg)
        raise PermanentError(msg)
    raise_unrecognised(status, text)
