"""Feishu / Lark (飞书) custom bot channel: JSON POSTs with the signature in the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from alerts.errors import PermanentError, RetryableError
from alerts.types import Notification

IDEMPOTENCY_HEADER = "Idempotency-Key"
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
        try:
            async with self.session.post(
                url,
                json=body,
                # Feishu has no idempotency field; the header costs nothing and proxies can use it.
                headers={IDEMPOTENCY_HEADER: n.idempotency_key, "User-Agent": "firesentry/1"},
                timeout=aiohttp.ClientTimeout(total=self.opts.timeout_s),
            ) as resp:
                status, text = resp.status, await resp.text(errors="replace")
        except TimeoutError as exc:
            raise RetryableError(f"timed out after {self.opts.timeout_s}s") from exc
        except aiohttp.ClientError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
        _check(status, text)


def _check(status: int, text: str) -> None:
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and ("code" in reply or "StatusCode" in reply):
        code = reply.get("code", reply.get("StatusCode"))
        if code == 0:
            return
        msg = f"Feishu code {code}: {reply.get('msg', reply.get('StatusMessage', ''))}"[:300]
        if code in RETRYABLE_CODES or status >= 500 or status == 429:
            raise RetryableError(msg)
        raise PermanentError(msg)
    msg = f"HTTP {status}: {text[:200]}"
    # A 2xx without a code came from something in between (a proxy); it may pass.
    if status >= 500 or status in (408, 429) or 200 <= status < 300:
        raise RetryableError(msg)
    raise PermanentError(msg)
