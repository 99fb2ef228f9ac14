"""Queries over rejected_messages (dead letters): listing, counts, and the replay queue.

Replay: the CLI selects rows and marks them requested (`select_for_replay`, `request_replay`);
the engine's ingest thread claims requested rows between batches (`claim_replays`), feeds them
through the pipeline like MQTT messages and, in the transaction that stores their data, marks
them replayed (`mark_replayed`); a message rejected again is a new row with replay_of set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

_COLUMNS = (
    "id, received_at, topic, device_id, reason, detail, payload, payload_truncated,"
    " replay_of, replay_requested_at, replay_requested_by, replayed_at"
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected message."""

    id: int
    received_at: dt.datetime
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes
    payload_truncated: bool = False
    replay_of: int | None = None
    replay_requested_at: dt.datetime | None = None
    replay_requested_by: str | None = None
    replayed_at: dt.datetime | None = None

    @property
    def kind(self) -> str:
        """The message kind: the topic's last level (telemetry, event, status)."""
        return self.topic.rsplit("/", 1)[-1]


def _dead_letter(r: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        int(r[0]), r[1], r[2], r[3], r[4], r[5], bytes(r[6]), bool(r[7]), r[8], r[9], r[10], r[11]
    )


def recent(
    conn: psycopg.Connection[Any],
    *,
    reason: str | None = None,
    device_id: str | None = None,
    limit: int = 50,
) -> list[DeadLetter]:
    """The newest dead letters, optionally of one reason or device."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM rejected_messages"  # noqa: S608 (constant column list)
        " WHERE (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(device)s::text IS NULL OR device_id = %(device)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"reason": reason, "device": device_id, "limit": limit},
    ).fetchall()
    return [_dead_letter(r) for r in rows]


def get(conn: psycopg.Connection[Any], dead_letter_id: int) -> DeadLetter | None:
    """One dead letter by id, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM rejected_messages WHERE id = %s",  # noqa: S608
        (dead_letter_id,),
    ).fetchone()
    return None if row is None else _dead_letter(row)


def stats(
    conn: psycopg.Connection[Any], since: dt.datetime
) -> list[tuple[str, int, int, dt.datetime]]:
    """(reason, messages, devices, last seen) per reason since a time, most frequent first."""
    rows = conn.execute(
        "SELECT reason, count(*), count(DISTINCT device_id), max(received_at)"
        " FROM rejected_messages WHERE received_at >= %s GROUP BY reason ORDER BY 2 DESC",
        (since,),
    ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2]), r[3]) for r in rows]


# --- replay: the operator's side ---


@dataclass(frozen=True, slots=True)
class ReplaySelection:
    """The rows an operator's replay selects, and those it leaves out with the reason why."""

    ids: list[int]
    # Only part of the payload was kept: replaying it would replay a different message.
    truncated: list[int]
    # Replayed before (left out unless `again`).
    already_replayed: list[int]
    # A status says what a device is at the moment it is sent: replayed later it would lie.
    status: list[int]
    # Asked for by id but not in the table.
    missing: list[int]
    # Messages per kind (telemetry, event) among ids.
    kinds: dict[str, int]


def select_for_replay(
    conn: psycopg.Connection[Any],
    *,
    ids: Sequence[int] | None = None,
    reason: str | None = None,
    since: dt.datetime | None = None,
    device: str | None = None,
    again: bool = False,
) -> ReplaySelection:
    """The dead letters matching every given criterion, split into replayable and left out."""
    rows = conn.execute(
        "SELECT id, payload_truncated, replayed_at IS NOT NULL, topic FROM rejected_messages"
        " WHERE (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))"
        " AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s)"
        " AND (%(device)s::text IS NULL OR device_id = %(device)s)"
        " ORDER BY id",
        {
            "ids": None if ids is None else list(ids),
            "reason": reason,
            "since": since,
            "device": device,
        },
    ).fetchall()
    chosen: list[int] = []
    truncated: list[int] = []
    replayed: list[int] = []
    status: list[int] = []
    kinds: dict[str, int] = {}
    for rid, is_truncated, was_replayed, topic in rows:
        kind = str(topic).rsplit("/", 1)[-1]
        if is_truncated:
            truncated.append(int(rid))
        elif kind == "status":
            status.append(int(rid))
        elif was_replayed and not again:
            replayed.append(int(rid))
        else:
            chosen.append(int(rid))
            kinds[kind] = kinds.get(kind, 0) + 1
    missing: list[int] = []
    if ids is not None:
        found = {
            int(r[0])
            for r in conn.execute(
                "SELECT id FROM rejected_messages WHERE id = ANY(%s)", (list(ids),)
            ).fetchall()
        }
        missing = sorted({i for i in ids if i not in found})
    return ReplaySelection(chosen, truncated, replayed, status, missing, kinds)


def request_replay(conn: psycopg.Connection[Any], ids: Sequence[int], actor: str) -> int:
    """Queue dead letters for the engine to replay (again, if replayed before); return how many."""
    cur = conn.execute(
        "UPDATE rejected_messages SET replay_requested_at = now(), replay_requested_by = %s,"
        " replayed_at = NULL, replay_claimed_until = NULL"
        " WHERE id = ANY(%s) AND NOT payload_truncated",
        (actor, list(ids)),
    )
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class Rejected:
    """A new dead letter that a replay produced: the message was rejected again."""

    id: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ReplayStatus:
    """Where one dead letter's replay stands."""

    id: int
    requested_at: dt.datetime | None
    requested_by: str | None
    replayed_at: dt.datetime | None
    # Rows with replay_of = id written by the latest replay (empty: it went through cleanly).
    rejected_again: tuple[Rejected, ...]

    @property
    def outcome(self) -> str:
        """not requested, queued, stored, or rejected again."""
        if self.requested_at is None:
            return "not requested"
        if self.replayed_at is None:
            return "queued"
        if self.rejected_again:
            return "rejected again"
        return "stored"


def replay_status(conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[ReplayStatus]:
    """The replay state of each of these dead letters (those that exist), in id order."""
    rows = conn.execute(
        "SELECT o.id, o.replay_requested_at, o.replay_requested_by, o.replayed_at,"
        " coalesce(array_agg(r.id ORDER BY r.id) FILTER (WHERE r.id IS NOT NULL), '{}'),"
        " coalesce(array_agg(r.reason ORDER BY r.id) FILTER (WHERE r.id IS NOT NULL), '{}'),"
        " coalesce(array_agg(r.detail ORDER BY r.id) FILTER (WHERE r.id IS NOT NULL), '{}')"
        " FROM rejected_messages o"
        # The latest round only: LEAST() ignores a NULL replayed_at; the new row is written in
        # the transaction that sets replayed_at, so its received_at is never before either.
        " LEFT JOIN rejected_messages r ON r.replay_of = o.id AND o.replay_requested_at IS NOT NULL"
        "  AND r.received_at >= LEAST(o.replay_requested_at, o.replayed_at)"
        " WHERE o.id = ANY(%s) GROUP BY o.id ORDER BY o.id",
        (list(ids),),
    ).fetchall()
    return [
        ReplayStatus(
            int(r[0]),
            r[1],
            r[2],
            r[3],
            tuple(
                Rejected(int(i), str(s), str(d)) for i, s, d in zip(r[4], r[5], r[6], strict=True)
            ),
        )
        for r in rows
    ]


# --- replay: the engine's side ---


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """A dead letter the engine is to feed through ingest again, as it came off the broker."""

    id: int
    topic: str
    payload: bytes


def claim_replays(
    conn: psycopg.Connection[Any], limit: int, lease_s: float = 60.0
) -> list[ReplayRequest]:
    """Claim up to limit requested rows (oldest first) for lease_s seconds; others skip them.

    Works in autocommit (the lease keeps other workers off until mark_replayed or its expiry,
    so a crash before the commit leaves the rows to be claimed again) and inside the batch
    transaction (the row locks do the same until commit; a rollback undoes the claim).
    """
    rows = conn.execute(
        "UPDATE rejected_messages m SET replay_claimed_until = now() + make_interval(secs => %s)"
        " FROM (SELECT id FROM rejected_messages"
        "  WHERE replay_requested_at IS NOT NULL AND replayed_at IS NULL AND NOT payload_truncated"
        "  AND (replay_claimed_until IS NULL OR replay_claimed_until < now())"
        "  ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) c"
        " WHERE m.id = c.id RETURNING m.id, m.topic, m.payload",
        (lease_s, limit),
    ).fetchall()
    return sorted((ReplayRequest(int(r[0]), r[1], bytes(r[2])) for r in rows), key=lambda q: q.id)


def mark_replayed(conn: psycopg.Connection[Any], ids: Sequence[int]) -> int:
    """Mark claimed rows replayed; run it in the transaction that stores their data."""
    if not ids:
        return 0
    cur = conn.execute(
        "UPDATE rejected_messages SET replayed_at = now(), replay_claimed_until = NULL"
        " WHERE id = ANY(%s) AND replayed_at IS NULL",
        (list(ids),),
    )
    return cur.rowcount


class RejectionRow(Protocol):
    """What write_rejections needs of a rejection (ingest's Rejection, with replay_of added)."""

    @property
    def topic(self) -> str:
        """The MQTT topic it came on."""

    @property
    def device_id(self) -> str | None:
        """The topic's device id, when the topic had one."""

    @property
    def reason(self) -> str:
        """The rejection reason (unknown_device, malformed, ...)."""

    @property
    def detail(self) -> str:
        """What exactly was wrong."""

    @property
    def payload(self) -> bytes:
        """The payload as kept (whole, or cut when oversize)."""

    @property
    def truncated(self) -> bool:
        """Whether payload is only the start of the message."""

    @property
    def replay_of(self) -> int | None:
        """The dead letter this message is a replay of (None: it came from the broker)."""


def write_rejections(conn: psycopg.Connection[Any], rejections: Iterable[RejectionRow]) -> None:
    """COPY dead letters into rejected_messages, inside the caller's transaction."""
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY rejected_messages"
            " (topic, device_id, reason, detail, payload, payload_truncated, replay_of) FROM STDIN"
        ) as cp,
    ):
        for r in rejections:
            cp.write_row(
                (r.topic, r.device_id, r.reason, r.detail, r.payload, r.truncated, r.replay_of)
            )
