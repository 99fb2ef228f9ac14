"""API bearer tokens: created once and shown once; only their SHA-256 is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

# display: a wall screen's board (alerts and the stream, read only), logged in for months;
# inspector: grid workers and inspectors who report and follow hazards; supervisor: fire
# supervisors, who also review rectifications and close hazards.
ROLES = ("operator", "analyst", "admin", "display", "inspector", "supervisor")
TOKEN_PREFIX = "fst_"
HINT_CHARS = len(TOKEN_PREFIX) + 6
# Why a token that once was live no longer is (the reasons an open stream is ended with).
REVOKED, EXPIRED, DELETED = "token_revoked", "token_expired", "token_deleted"


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A token as stored (never the token itself)."""

    id: int
    name: str
    role: str
    units: tuple[str, ...]
    hint: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None = None


def digest(token: str) -> bytes:
    """SHA-256 of a token: enough for 32 random bytes (no dictionary to try)."""
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe) with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _row(r: Sequence[Any]) -> TokenRow:
    return TokenRow(int(r[0]), r[1], r[2], tuple(r[3] or ()), r[4], r[5], r[6], r[7], r[8])


def create_token(
    conn: psycopg.Connection[Any],
    name: str,
    role: str,
    units: Sequence[str] = (),
    *,
    expires_at: dt.datetime | None = None,
) -> tuple[TokenRow, str]:
    """Store a new token (valid until expires_at, if given); return its row and the token."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at needs a time zone")
    token = new_token()
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, units, token_sha256, hint, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " RETURNING id, name, role, units, hint, created_at, last_used_at, revoked_at, expires_at",
        (name, role, sorted(set(units)), digest(token), token[:HINT_CHARS], expires_at),
    ).fetchone()
    assert row is not None
    return _row(row), token


def lookup(conn: psycopg.Connection[Any], token: str) -> TokenRow | None:
    """The live (not revoked, not expired) token with this value, noting its use once a minute."""
    row = conn.execute(
        "SELECT id, name, role, units, hint, created_at, last_used_at, revoked_at, expires_at"
        " FROM api_tokens WHERE token_sha256 = %s AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())",
        (digest(token),),
    ).fetchone()
    if row is None:
        return None
    found = _row(row)
    if found.last_used_at is None or found.last_used_at < dt.datetime.now(dt.UTC) - dt.timedelta(
        minutes=1
    ):
        conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = %s", (found.id,))
    return found


def no_longer_live(conn: psycopg.Connection[Any], token_ids: Iterable[int]) -> dict[int, str]:
    """Of these token ids, those revoked, expired or deleted since, each with why."""
    ids = sorted(set(token_ids))
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT id, revoked_at IS NOT NULL, expires_at IS NOT NULL AND expires_at <= now()"
        " FROM api_tokens WHERE id = ANY(%s)",
        (ids,),
    ).fetchall()
    out = {i: DELETED for i in ids}
    for ident, revoked, expired in rows:
        if revoked:
            out[int(ident)] = REVOKED
        elif expired:
            out[int(ident)] = EXPIRED
        else:
            del out[int(ident)]
    return out


def list_tokens(conn: psycopg.Connection[Any], include_revoked: bool = False) -> list[TokenRow]:
    """Tokens by id, live ones only unless asked (expired ones count as not live)."""
    rows = conn.execute(
        "SELECT id, name, role, units, hint, created_at, last_used_at, revoked_at, expires_at"
        " FROM api_tokens WHERE %s OR (revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())) ORDER BY id",
        (include_revoked,),
    ).fetchall()
    return [_row(r) for r in rows]


def revoke(conn: psycopg.Connection[Any], token_id: int) -> bool:
    """Revoke a token at once; False when there is no live token with this id."""
    cur = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
        (token_id,),
    )
    return cur.rowcount == 1
