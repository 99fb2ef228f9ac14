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


def refuse_rows(db: Endpoints, table: str, condition: str, shown: str) -> None:
    """A trigger that makes the database refuse rows of table where condition holds: a refusal
    decode cannot foresee."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute(
            f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF {condition} THEN"
            f" RAISE EXCEPTION 'test trigger refuses %', {shown}; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"
        )


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
    refuse_rows(db, "events", "NEW.text LIKE '%POISON%'", "NEW.text")
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


def test_a_refused_batch_undoes_the_batch_prepared_behind_it(
    engine: Engine,
    db: Endpoints,
    prefix: str,
    receiver: WebhookReceiver,
    pub: Publisher,
) -> None:
    """Ingest evaluates batch N+1 while N is written. Here N holds the only crossing (350.5 mA),
    which the database refuses, and N+1 a reading still above the limit (360 mA). N+1 was
    evaluated as if the alert were already open; once N is refused, it must be evaluated again,
    or the residual-current alert would never open."""
    refuse_rows(db, "telemetry", "NEW.value = 350.5", "NEW.value")
    # The lock holds N's write, so that N+1 is received and prepared behind it.
    blocker = psycopg.connect(db.dsn())
    blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
    t0 = int(time.time() * 1000) - 30_000
    try:
        pub.publish(
            f"{prefix}/em-1/telemetry", {"ts": t0, "metrics": {"residual_current_ma": 350.5}}
        )
        wait_until(lambda: engine.consumer.in_hand() == 1, 15, "batch N taken and written")
        pub.publish(
            f"{prefix}/em-1/telemetry",
            {"ts": t0 + 1000, "metrics": {"residual_current_ma": 360.0}},
        )
        wait_until(lambda: engine.consumer.in_hand() == 2, 15, "batch N+1 prepared behind N")
    finally:
        blocker.rollback()
        blocker.close()
    wait_until(
        lambda: (
            count(db, "SELECT count(*) FROM rejected_messages WHERE reason = 'storage_refused'")
            == 1
        ),
        15,
        "the refused crossing dead-lettered",
    )
    wait_until(
        lambda: count(db, "SELECT count(*) FROM alerts WHERE rule_id = 'residual_current_high'"),
        15,
        "the alert opened by the reading behind the refused one",
    )
    assert (
        scalar(db.dsn(), "SELECT first_value FROM alerts WHERE rule_id = 'residual_current_high'")
        == 360
    )
    assert count(db, "SELECT count(*) FROM telemetry") == 1
    wait_until(lambda: len(receiver.received) >= 1, 15, "the alert posted to the webhook")


def test_a_fire_alarm_is_written_before_a_telemetry_batch_prepared_ahead_of_it(
    engine: Engine, db: Endpoints, prefix: str, pub: Publisher
) -> None:
    """Batch N is held in flight by a lock, telemetry batch N+1 is prepared behind it, then a
    fire alarm arrives: N+1 goes back to the inbox and the fire alarm is written right after N
    (its transaction id comes before N+1's readings')."""
    blocker = psycopg.connect(db.dsn())
    blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
    t0 = int(time.time() * 1000) - 30_000
    try:
        pub.publish(f"{prefix}/em-1/telemetry", {"ts": t0, "metrics": {"temp_c_1": 30.0}})
        wait_until(lambda: engine.consumer.in_hand() == 1, 15, "batch N taken and written")
        pub.publish(f"{prefix}/em-1/telemetry", {"ts": t0 + 1000, "metrics": {"temp_c_1": 31.0}})
        wait_until(lambda: engine.consumer.in_hand() == 2, 15, "batch N+1 prepared behind N")
        pub.publish(f"{prefix}/utd-1/event", {"ts": t0, "seq": 9, "kind": "fire_alarm", "point": 3})
        # Received: waiting in the inbox itself, or N+1 waiting there in its place.
        wait_until(lambda: not engine.consumer._inbox.empty(), 15, "the fire alarm received")
    finally:
        blocker.rollback()
        blocker.close()
    wait_until(lambda: count(db, "SELECT count(*) FROM telemetry") == 2, 15, "both readings stored")
    order = scalar(
        db.dsn(),
        "SELECT (SELECT xmin::text::bigint FROM events WHERE seq = 9)"
        " < (SELECT xmin::text::bigint FROM telemetry WHERE value = 31.0)",
    )
    assert order, "the telemetry batch prepared ahead was written before the fire alarm"
