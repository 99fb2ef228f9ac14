"""A ledger transaction's outcome, learned from the database after its connection died."""

from __future__ import annotations

import dataclasses
import threading

import psycopg
import pytest

from firesentry.embedded import Endpoints
from store import commits
from tests.netproxy import Proxy


def test_a_lost_commit_answer_is_learned_as_committed(db: Endpoints) -> None:
    """The server commits, the answer never arrives: CommitUnknown, and the lane says committed."""
    lane = commits.Lane()
    proxy = Proxy(db.db_port)
    proxy.cut_reply_after(b"INSERT INTO units")
    try:
        conn = psycopg.connect(dataclasses.replace(db, db_port=proxy.port).dsn(), autocommit=True)
        with pytest.raises(commits.CommitUnknown) as caught, lane.transaction(conn):
            conn.execute("INSERT INTO units (id, name) VALUES ('u-lost', 'Lost Answer')")
        assert proxy.tripped.is_set()
        conn.close()
    finally:
        proxy.close()
    with psycopg.connect(db.dsn(), autocommit=True) as check:
        assert lane.committed(check, caught.value.mark)
        assert check.execute("SELECT count(*) FROM units WHERE id = 'u-lost'").fetchone() == (1,)


def test_a_connection_killed_mid_transaction_is_learned_as_not_committed(db: Endpoints) -> None:
    """Killed before COMMIT: CommitUnknown (the client cannot tell), and the lane says no."""
    lane = commits.Lane()
    conn = psycopg.connect(db.dsn(), autocommit=True)
    with psycopg.connect(db.dsn(), autocommit=True) as admin:
        with lane.transaction(conn):
            conn.execute("INSERT INTO units (id, name) VALUES ('u-before', 'Committed Before')")
        with pytest.raises(commits.CommitUnknown) as caught, lane.transaction(conn):
            conn.execute("INSERT INTO units (id, name) VALUES ('u-killed', 'Killed')")
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
            conn.execute("SELECT 1")
        conn.close()
        assert not lane.committed(admin, caught.value.mark)
        assert admin.execute("SELECT count(*) FROM units WHERE id = 'u-killed'").fetchone() == (0,)


def test_the_answer_waits_for_a_transaction_still_running_on_the_server(db: Endpoints) -> None:
    """The client's link died but the server still runs the transaction: the lane's answer
    waits for it to end instead of saying 'not committed' and having it written twice."""
    lane = commits.Lane()
    conn = psycopg.connect(db.dsn(), autocommit=True)
    answers: list[bool] = []
    with lane.transaction(conn):
        conn.execute("INSERT INTO units (id, name) VALUES ('u-slow', 'Still Running')")
        mark = lane.mark  # what a CommitUnknown would carry
        assert mark is not None

        def ask() -> None:
            with psycopg.connect(db.dsn(), autocommit=True) as other:
                answers.append(lane.committed(other, mark))

        asker = threading.Thread(target=ask)
        asker.start()
        asker.join(1.0)
        assert asker.is_alive(), "answered while the transaction was still open"
    asker.join(10)
    conn.close()
    assert answers == [True]


def test_a_refused_statement_rolls_back_and_is_not_unknown(db: Endpoints) -> None:
    """A statement the server refuses leaves the connection alive: a plain error, no lookup."""
    lane = commits.Lane()
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        with (
            pytest.raises(psycopg.errors.UniqueViolation),
            lane.transaction(conn),
        ):
            conn.execute("INSERT INTO units (id, name) VALUES ('u-dup', 'One')")
            conn.execute("INSERT INTO units (id, name) VALUES ('u-dup', 'Two')")
        assert not conn.broken
        assert conn.execute("SELECT count(*) FROM units WHERE id = 'u-dup'").fetchone() == (0,)


def test_a_lane_whose_row_was_cleaned_up_still_keeps_its_mark(db: Endpoints) -> None:
    """A lane idle for a week loses its row to another engine's clean-up; its next
    transaction's mark is still recorded, so a lost answer is not taken for a lost batch."""
    lane = commits.Lane()
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        with lane.transaction(conn):
            pass
        conn.execute("DELETE FROM commit_ledger WHERE writer = %s", (lane.writer,))
        with lane.transaction(conn):
            mark = lane.mark
        assert mark is not None
        assert lane.committed(conn, mark)
