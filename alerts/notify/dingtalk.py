"""DingTalk (钉钉) custom robot channel: signed JSON POSTs to a robot's webhook URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote_plus

import aiohttp
from yarl import URL

from alerts.errors import PermanentError
from alerts.notify.http import IDEMPOTENCY_HEADER, raise_for_errcode, request
from alerts.types import Notification

# 130101: the robot sent too fast (20 a minute); -1: DingTalk says it is busy.
RETRYABLE_CODES = frozenset({130101, -1})


@dataclass(frozen=True, slots=True)
class DingTalkOptions:
    """Robots by name → (webhook URL with access_token, signing secret "SEC…" or None)."""

    robots: Mapping[str, tuple[str, str | None]]
    msgtype: Literal["markdown", "text"] = "markdown"
    timeout_s: float = 10.0


def sign(secret: str, timestamp_ms: str) -> str:
    """The robot signature: base64 of HMAC-SHA256 over "<timestamp>\\n<secret>" (not URL-encoded)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()).decode()


def signed_url(url: str, secret: str | None, now_ms: int | None = None) -> URL:
    """The webhook URL with timestamp and sign added when the robot has a secret."""
    if not secret:
        return URL(url)
    ts = str(now_ms if now_ms is not None else int(time.time() * 1000))
    sep = "&" if "?" in url else "?"
    # Encoded by hand, as DingTalk documents it, and passed on as already encoded.
    return URL(f"{url}{sep}timestamp={ts}&sign={quote_plus(sign(secret, ts))}", encoded=True)


def message_body(title: str, text: str, msgtype: str) -> dict[str, Any]:
    """The JSON a DingTalk robot takes for one message."""
    if msgtype == "markdown":
        return {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": f"### {title}\n\n{text}"},
        }
    return {"msgtype": "text", "text": {"content": f"{title}\n{text}"}}


class DingTalkNotifier:
    """Delivers notifications of channel 'dingtalk' to configured custom robots."""

    channel = "dingtalk"

    def __init__(self, options: DingTalkOptions, session: aiohttp.ClientSession) -> None:
        self.opts = options
        self.session = session

    async def send(self, n: Notification) -> None:
        """POST one signed message; errcode 0 is success."""
        robot = self.opts.robots.get(n.receiver)
        if robot is None:
            raise PermanentError(f"no DingTalk robot named {n.receiver!r} in the configuration")
        url, secret = robot
        body = message_body(
            str(n.payload.get("title", "")), str(n.payload.get("text", "")), self.opts.msgtype
        )
        # DingTalk has no idempotency field; the header costs nothing and proxies can use it.
        status, text = await request(
            self.session,
            "POST",
            signed_url(url, secret),
            self.opts.timeout_s,
            json=body,
            headers={IDEMPOTENCY_HEADER: n.idempotency_key, "User-Agent": "firesentry/1"},
        )
        raise_for_errcode(status, text, "DingTalk", RETRYABLE_CODES)
