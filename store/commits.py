"""Commits whose answer was lost: learn from the database whether they happened.

When the connection dies while COMMIT is on its way, the server may have committed and the
client cannot tell. Writing the same batch again is harmless for readings (ON CONFLICT DO
NOTHING) but not for what was planned from in-memory rule state: an alert opened and cleared
in that batch was re-opened as 'refired' and everyone was notified twice.

A ledger lane (one per writing thread) has a row in commit_ledger (migration 0022) and
updates it with a fresh mark first thing in each of its transactions; afterwards the mark is
in the row exactly when that transaction committed. Reading the row FOR SHARE waits while the
dead connection's server side still runs the transaction. pg_xact_status was tried first and
is wrong after a crash: PostgreSQL hands out again transaction ids whose WAL never reached
the disk, and reported a lost batch as committed (the fault suite caught it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

# A question for a fresh connection: did it commit? And who asks it (retrying while the
# database is away): the caller's.
Ask = Callable[[psycopg.Connection[Any]], bool]
Resolver = Callable[[Ask], bool]
# Lanes of engines that stopped leave their row behind; rows this old are removed.
_STALE = "7 days"


class CommitUnknown(psycopg.OperationalError):
    """The connection died inside a ledger transaction: it may have committed (see mark)."""

    def __init__(self, mark: uuid.UUID, cause: BaseException) -> None:
        super().__init__(f"connection lost before the commit was confirmed: {str(cause).strip()}")
        self.mark = mark


class Lane:
    """One writer's row in the ledger; use it from one thread (one transaction at a time)."""

    def __init__(self) -> None:
        self.writer = uuid.uuid4()
        self.mark: uuid.UUID | None = None  # of the transaction running or run last
        self._registered = False

    def _register(self, conn: psycopg.Connection[Any]) -> None:
        # Committed before any tracked transaction, so that committed() can lock the row a
        # transaction still in progress has updated (an uncommitted insert would not block it).
        with conn.transaction():
            conn.execute(
                f"DELETE FROM commit_ledger WHERE at < now() - interval '{_STALE}'"  # noqa: S608
            )
            conn.execute(
                "INSERT INTO commit_ledger (writer) VALUES (%s) ON CONFLICT DO NOTHING",
                (self.writer,),
            )
        self._registered = True

    @contextmanager
    def transaction(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """conn.transaction() that raises CommitUnknown (an OperationalError) when the
        connection dies before its outcome is known, so that committed() can tell."""
        if not self._registered:
            self._register(conn)
        mark = self.mark = uuid.uuid4()
        marked = False
        try:
            with conn.transaction():
                cur = conn.execute(
                    "UPDATE commit_ledger SET mark = %s, at = now() WHERE writer = %s",
                    (mark, self.writer),
                )
                if cur.rowcount == 0:
                    # Another engine's start removed the row of a lane idle for _STALE (the
                    # tick lane writes only on deadman changes): the mark must still be kept.
                    conn.execute(
                        "INSERT INTO commit_ledger (writer, mark) VALUES (%s, %s)",
                        (self.writer, mark),
                    )
                marked = True
                yield
        except psycopg.OperationalError as exc:
            if marked and conn.broken:
                raise CommitUnknown(mark, exc) from exc
            raise  # never marked, or the connection lives on: it did not commit

    def committed(self, conn: psycopg.Connection[Any], mark: uuid.UUID) -> bool:
        """Whether the transaction that wrote mark committed (waits for it to end)."""
        with conn.transaction():
            # Bounded, so that a caller asked to stop is not held here; it asks again.
            conn.execute("SET LOCAL lock_timeout = '5s'")
            row = conn.execute(
                "SELECT mark FROM commit_ledger WHERE writer = %s FOR SHARE", (self.writer,)
            ).fetchone()
        return row is not None and row[0] == mark
