"""A notification row nothing can be made of must not hold up the others claimed with it.

Before: rendering such a row raised, the whole round failed, and every row claimed in it stayed
'sending' until its lease ran out (60 s), again each time the bad row was claimed. Found when a
new channel's rows reached the renderer; any row a future release or a hand-made INSERT writes
with an unknown kind would do the same.
"""

from __future__ import annotations

import datetime as dt

import msgspec
import psycopg
import pytest

from alerts.shape import sample_notice
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.webhook import WebhookReceiver
from store import channels
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def test_a_row_that_cannot_be_rendered_is_given_up_and_the_rest_go_out(
    db: Endpoints, engine: Engine, receiver: WebhookReceiver
) -> None:
    good = msgspec.json.encode(sample_notice("ops", "-", dt.datetime.now(dt.UTC))).decode()
    with psycopg.connect(db.dsn(), autocommit=False) as conn:
        # Claimed in one round: the bad row first (it was queued first).
        bad_id = conn.execute(
            "INSERT INTO notifications (channel, receiver, payload, kind)"
            " VALUES ('sms', '+8613800000009', '{}'::jsonb, 'no_such_kind') RETURNING id"
        ).fetchone()
        conn.execute(
            "INSERT INTO notifications (channel, receiver, payload, kind)"
            " VALUES ('webhook', 'test', %s::jsonb, 'test')",
            (good,),
        )
        channels.notify_outbox(conn)
        conn.commit()
    assert bad_id is not None
    assert receiver.wait_for(lambda got: len(got) == 1, 15), "the good row was held up"

    def given_up() -> tuple[str, str] | None:
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT state, last_error FROM notifications WHERE id = %s", (bad_id[0],)
            ).fetchone()
        return (row[0], row[1]) if row is not None and row[0] == "given_up" else None

    state = wait_until(given_up, 15, "the bad row given up")
    assert state is not None and "cannot be rendered" in state[1]
    assert "no_such_kind" in state[1]
