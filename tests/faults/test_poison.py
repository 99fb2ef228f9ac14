"""No message can stop ingest: each poison class is dead-lettered and the messages around it stored."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from firesentry.app import Engine
from firesentry.embedded import Endpoints
from simulators.services.webhook import WebhookReceiver
from tests.helpers import Publisher, scalar, wait_until

pytestmark = pytest.mark.e2e

# (topic kind, device, payload template, reason it must be dead-lettered with); {ts} is filled in.
POISON = [
    (
        "telemetry",
        "em-1",
        b'{"ts": {ts}, "metrics": {"residual_current_ma": 1}, "x\\u0000": 1}',
        "malformed",
    ),
    ("telemetry", "em-1", b'{"ts": {ts}, "metrics": {"rc\\u0000": 1.0}}', "unknown_metric"),
    (
        "event",
        "utd-1",
        b'{"ts": {ts}, "seq": 7, "kind": "fault", "loop": 2147483648}',
        "out_of_range",
    ),
    (
        "event",
        "utd-1",
        b'{"ts": {ts}, "seq": 8, "kind": "fault", "point": 100000000000000000000000}',
        "out_of_range",
    ),
    (
        "status",
        "utd-1",
        b'{"status": "online", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        "malformed",
    ),
]


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    p = Publisher(services, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def count(db: Endpoints, query: str) -> int:
    return int(scalar(db.dsn(), query))


def test_every_poison_class_is_dead_lettered_and_ingest_goes_on(
    engine: Engine,
    db: Endpoints,
    prefix: str,
    receiver: WebhookReceiver,
    pub: Publisher,
) -> None:
    """Poison messages between good ones cost a dead letter each; readings and a fire alarm after
    them are stored and the fire alarm's alert opens once and is posted."""
    t0 = int(time.time() * 1000) - 60_000
    good = 0
    for n, (kind, device, template, _) in enumerate(POISON):
        for k in range(20):
            pub.publish(
                f"{prefix}/em-1/telemetry",
                {"ts": t0 + n * 100 + k, "metrics": {"residual_current_ma": 40.0}},
            )
            good += 1
        pub.publish(f"{prefix}/{device}/{kind}", template.replace(b"{ts}", b"%d" % (t0 + n)))
    pub.publish(
        f"{prefix}/utd-1/event",
        b'{"ts": %d, "seq": 1, "kind": "fire_alarm", "loop": 1, "point": 12,'
        b' "text": "3F east \\u0000 smoke"}' % (t0 + 5_000),
    )
    wait_until(
        lambda: count(db, "SELECT count(*) FROM telemetry") == good,
        30,
        f"all {good} good readings stored",
    )
    wait_until(
        lambda: count(db, "SELECT count(*) FROM alerts WHERE rule_id = 'fire_alarm'") == 1,
        30,
        "the fire alarm after the poison opened its alert",
    )
    assert receiver.wait_for(
        lambda r: any(x.body["alert"]["rule_id"] == "fire_alarm" for x in r), 15
    ), "fire alarm not posted"
    wait_until(
        lambda: count(db, "SELECT count(*) FROM rejected_messages") == len(POISON),
        15,
        "every poison message dead-lettered",
    )
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        got = sorted(r[0] for r in conn.execute("SELECT reason FROM rejected_messages"))
        text = conn.execute("SELECT text FROM events WHERE kind = 1").fetchone()
    assert got == sorted(r for *_, r in POISON)
    assert text is not None and "smoke" in text[0] and "\x00" not in text[0]


def test_a_refusal_nobody_foresaw_is_isolated_by_bisection(
    engine: Engine,
    db: Endpoints,
    prefix: str,
    receiver: WebhookReceiver,
    pub: Publisher,
) -> None:
    """A row the database refuses for a reason decode cannot know (here a trigger) is dead-lettered
    as storage_refused with the database's error; its batch-mates commit, and a crossing in the
    same batch opens its alert exactly once (rule state rolled back with the failed write)."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.text LIKE '%POISON%' THEN"
            " RAISE EXCEPTION 'test trigger refuses %', NEW.text; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events"
            " FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )
        # Hold the batch until all messages are queued, so that poison and crossing share it.
        blocker = psycopg.connect(db.dsn())
        blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
    t0 = int(time.time() * 1000) - 30_000
    try:
        for k in range(30):
            pub.publish(
                f"{prefix}/em-1/telemetry",
                {"ts": t0 + k, "metrics": {"residual_current_ma": 350.0 if k == 15 else 40.0}},
            )
            if k == 10:
                pub.publish(
                    f"{prefix}/utd-1/event",
                    {"ts": t0 + k, "seq": 2, "kind": "fault", "text": "POISON panel"},
                )
        pub.publish(
            f"{prefix}/utd-1/event", {"ts": t0 + 100, "seq": 3, "kind": "fire_alarm", "point": 4}
        )
    finally:
        blocker.rollback()
        blocker.close()
    wait_until(lambda: count(db, "SELECT count(*) FROM telemetry") == 30, 30, "30 readings stored")
    wait_until(
        lambda: (
            count(db, "SELECT count(*) FROM rejected_messages WHERE reason = 'storage_refused'")
            == 1
        ),
        15,
        "the refused event dead-lettered",
    )
    wait_until(
        lambda: count(db, "SELECT count(*) FROM alerts WHERE rule_id = 'fire_alarm'") == 1,
        15,
        "fire alarm after the refused event opened",
    )
    assert count(db, "SELECT count(*) FROM alerts WHERE rule_id = 'residual_current_high'") == 1
    assert (
        count(
            db,
            "SELECT count(*) FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
            " WHERE a.rule_id = 'residual_current_high' AND e.kind = 'opened'",
        )
        == 1
    )
    detail = scalar(db.dsn(), "SELECT detail FROM rejected_messages")
    assert "test trigger refuses" in detail
    assert bytes(scalar(db.dsn(), "SELECT payload FROM rejected_messages")).find(b"POISON") > 0
    assert count(db, "SELECT count(*) FROM events") == 1  # the fire alarm; not the refused fault
