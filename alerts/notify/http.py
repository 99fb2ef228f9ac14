"""HTTP plumbing every HTTP channel shares: one request, and what its reply means for retrying."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from yarl import URL

from alerts.errors import PermanentError, RetryableError

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Statuses that say "later might work"; every other 4xx means the request itself is wrong.
RETRYABLE_4XX = frozenset({408, 425, 429})


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    timeout_s: float,
    **kwargs: Any,
) -> tuple[int, str]:
    """Do one request and return (status, body); transport failures become RetryableError."""
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
        ) as resp:
            return resp.status, await resp.text(errors="replace")
    except TimeoutError as exc:
        raise RetryableError(f"timed out after {timeout_s}s") from exc
    except aiohttp.ClientError as exc:
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc


def raise_for_status(status: int, text: str) -> None:
    """Return on 2xx; raise RetryableError on 5xx and RETRYABLE_4XX, else PermanentError."""
    if 200 <= status < 300:
        return
    msg = f"HTTP {status}: {text[:200]}"
    if status >= 500 or status in RETRYABLE_4XX:
        raise RetryableError(msg)
    raise PermanentError(msg)


def raise_unrecognised(status: int, text: str) -> None:
    """A robot reply without its own result code: retry unless the status says it cannot work."""
    msg = f"HTTP {status}: {text[:200]}"
    # A 2xx without a result code came from something in between (a proxy); it may pass.
    if status >= 500 or status in (408, 429) or 200 <= status < 300:
        raise RetryableError(msg)
    raise PermanentError(msg)


def raise_for_errcode(status: int, text: str, who: str, retryable: frozenset[int]) -> None:
    """WeCom/DingTalk replies: errcode 0 is success, `retryable` codes are retried."""
    reply = parse_json(text)
    if "errcode" not in reply:
        raise_unrecognised(status, text)
        return
    code = reply["errcode"]
    if code == 0:
        return
    msg = f"{who} errcode {code}: {reply.get('errmsg', '')}"[:300]
    if code in retryable:
        raise RetryableError(msg)
    raise PermanentError(msg)


def parse_json(text: str) -> dict[str, Any]:
    """The reply as a JSON object, or {} when it is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
