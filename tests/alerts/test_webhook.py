"""The webhook channel and the shipped receiver: the key is signed; forged or replayed POSTs fail."""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiohttp
import msgspec
import pytest

from alerts.notify.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    WebhookTarget,
    body_of,
    sign,
    verify,
)
from simulators.services.webhook import WebhookReceiver
from tests.alerts.util import note

SECRET = b"webhook-test-secret"


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    """The shipped receiver with a known secret."""
    with WebhookReceiver(SECRET) as r:
        yield r


def signed_headers(body: bytes, *, ts: int | None = None, key: str = "hdr-1") -> dict[str, str]:
    """Headers as the notifier sends them, signed with SECRET at ts (now by default)."""
    stamp = str(int(time.time()) if ts is None else ts)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(SECRET, stamp, body),
        IDEMPOTENCY_HEADER: key,
    }


async def post(
    session: aiohttp.ClientSession, r: WebhookReceiver, body: bytes, headers: dict[str, str]
) -> tuple[int, str]:
    """POST raw bytes to the receiver; return (status, text)."""
    async with session.post(r.url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_notifier_signs_a_body_that_carries_the_idempotency_key(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    """The notifier's POST is accepted, and the key the receiver records is the signed body's."""
    n = note("webhook", "ops", status="firing")
    target = WebhookTarget(receiver.url, SECRET, 5)
    await WebhookNotifier({"ops": target}, session).send(n)
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.signature_ok and got.body["idempotency_key"] == n.idempotency_key
    assert got.idempotency_key == n.idempotency_key
    assert verify(SECRET, got.headers[TIMESTAMP_HEADER], got.raw, got.headers[SIGNATURE_HEADER])


async def test_a_replay_with_a_fresh_header_is_not_processed_twice(
    session: aiohttp.ClientSession,
) -> None:
    """Replaying a signed POST with a new Idempotency-Key header is answered as a duplicate."""
    processed: list[str] = []
    with WebhookReceiver(SECRET, lambda r: processed.append(r.idempotency_key)) as receiver:
        body = body_of(note("webhook", "ops", status="firing"))
        headers = signed_headers(body, key="first")
        assert (await post(session, receiver, body, headers))[0] == 200
        replay = {**headers, IDEMPOTENCY_HEADER: "a-fresh-one"}
        status, text = await post(session, receiver, body, replay)
        assert status == 200 and msgspec.json.decode(text)["duplicate"] is True
        status, text = await post(session, receiver, body, {**headers, IDEMPOTENCY_HEADER: ""})
        assert status == 200 and msgspec.json.decode(text)["duplicate"] is True
    assert len(processed) == 1 and len(receiver.received) == 1


async def test_an_unsigned_post_is_refused_with_401(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    """A POST without signature and timestamp headers gets 401 and is not recorded."""
    body = body_of(note("webhook", "ops"))
    status, _ = await post(session, receiver, body, {"Content-Type": "application/json"})
    assert status == 401
    assert receiver.received == [] and receiver.refused == ["missing signature"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({SIGNATURE_HEADER: "sha256=" + "0" * 64}, "bad signature"),
        ({SIGNATURE_HEADER: "sha256=\u00e9t\u00e9"}, "bad signature"),
        ({TIMESTAMP_HEADER: "soon"}, "bad timestamp"),
    ],
)
async def test_a_bad_signature_is_refused_with_401(
    receiver: WebhookReceiver,
    session: aiohttp.ClientSession,
    change: dict[str, str],
    reason: str,
) -> None:
    """A wrong (or non-ASCII) signature or an unreadable timestamp gets 401 and is not recorded."""
    body = body_of(note("webhook", "ops"))
    headers = {**signed_headers(body), **change}
    status, _ = await post(session, receiver, body, headers)
    assert status == 401
    assert receiver.received == [] and receiver.refused == [reason]


async def test_a_body_changed_after_signing_is_refused(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    """Swapping the body's idempotency key under a valid signature gets 401."""
    n = note("webhook", "ops")
    body = body_of(n)
    headers = signed_headers(body)
    forged = body.replace(n.idempotency_key.encode(), b"forged-key")
    assert (await post(session, receiver, forged, headers))[0] == 401
    assert receiver.received == []


@pytest.mark.parametrize("age_s", [-301, 301, 3600])
async def test_an_old_or_future_timestamp_is_refused_with_401(
    receiver: WebhookReceiver, session: aiohttp.ClientSession, age_s: int
) -> None:
    """A correctly signed POST whose timestamp is more than 300 s off gets 401."""
    body = body_of(note("webhook", "ops"))
    headers = signed_headers(body, ts=int(time.time()) - age_s)
    status, _ = await post(session, receiver, body, headers)
    assert status == 401
    assert receiver.received == [] and receiver.refused == ["timestamp outside 300 s"]


async def test_a_signed_body_without_a_key_is_refused_with_400(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    """A signed JSON body that has no idempotency_key cannot be deduplicated and gets 400."""
    body = msgspec.json.encode({"version": "1", "status": "firing"})
    status, _ = await post(session, receiver, body, signed_headers(body))
    assert status == 400 and receiver.received == []
