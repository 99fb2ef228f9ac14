"""WeCom (企业微信) group robot channel: JSON POSTs to a robot's webhook URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from alerts.errors import PermanentError
from alerts.notify.http import IDEMPOTENCY_HEADER, raise_for_errcode, request
from alerts.types import Notification

# 45009: the robot's 20 messages a minute are used up; -1: WeCom says it is busy.
RETRYABLE_CODES = frozenset({45009, -1})
# WeCom refuses longer contents (bytes of UTF-8), it does not cut them.
MAX_BYTES = {"markdown": 4096, "text": 2048}


@dataclass(frozen=True, slots=True)
class WeComOptions:
    """Robots by name → (webhook URL with its key, secret); WeCom robots are not signed."""

    robots: Mapping[str, tuple[str, str | None]]
    msgtype: Literal["markdown", "text"] = "markdown"
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name, (_, secret) in self.robots.items():
            if secret:
                raise ValueError(f"WeCom robot {name!r} has a secret; WeCom robots take none")


def clip_utf8(text: str, limit: int) -> str:
    """Cut text to at most limit bytes of UTF-8, ending with "…" when cut."""
    if len(text.encode()) <= limit:
        return text
    cut = text.encode()[: limit - len("…".encode())].decode(errors="ignore")
    return cut + "…"


def message_body(title: str, text: str, msgtype: str) -> dict[str, Any]:
    """The JSON a WeCom robot takes for one message."""
    if msgtype == "markdown":
        content = clip_utf8(f"### {title}\n{text}", MAX_BYTES["markdown"])
        return {"msgtype": "markdown", "markdown": {"content": content}}
    content = clip_utf8(f"{title}\n{text}", MAX_BYTES["text"])
    return {"msgtype": "text", "text": {"content": content}}


class WeComNotifier:
    """Delivers notifications of channel 'wecom' to configured group robots."""

    channel = "wecom"

    def __init__(self, options: WeComOptions, session: aiohttp.ClientSession) -> None:
        self.opts = options
        self.session = session

    async def send(self, n: Notification) -> None:
        """POST one message; errcode 0 is success."""
        robot = self.opts.robots.get(n.receiver)
        if robot is None:
            raise PermanentError(f"no WeCom robot named {n.receiver!r} in the configuration")
        url = robot[0]
        body = message_body(
            str(n.payload.get("title", "")), str(n.payload.get("text", "")), self.opts.msgtype
        )
        # WeCom has no idempotency field; the header costs nothing and proxies can use it.
        status, text = await request(
            self.session,
            "POST",
            url,
            self.opts.timeout_s,
            json=body,
            headers={IDEMPOTENCY_HEADER: n.idempotency_key, "User-Agent": "firesentry/1"},
        )
        raise_for_errcode(status, text, "WeCom", RETRYABLE_CODES)
