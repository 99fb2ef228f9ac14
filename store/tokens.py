"""API bearer tokens: created once and shown once; only their SHA-256 is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

ROLES = ("operator", "analyst", "admin")
TOKEN_PREFIX = "fst_"
HINT_CHARS = len(TOKEN_PREFIX) + 6


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


def digest(token: str) -> bytes:
    """SHA-256 of a token: enough for 32 random bytes (no dictionary to try)."""
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe) with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _row(r: Sequence[Any]) -> TokenRow:
    return TokenRow(int(r[0]), r[1], r[2], tuple(r[3] or ()), r[4], r[5], r[6], r[7])


def create_token(
    conn: psycopg.Connection[Any], name: str, role: str, units: Sequence[str] = ()
) -> tuple[TokenRow, str]:
    """Store a new token; return its row and the token, which is not kept anywhere."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, units, token_sha256, hint) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id, name, role, units, hint, created_at, last_used_at, revoked_at",
        (name, role, sorted(set(units)), digest(token), token[:HINT_CHARS]),
    ).fetchone()
    assert row is not None
    return _row(row), token


def lookup(conn: psycopg.Connection[Any], token: str) -> TokenRow | None:
    """The live (not revoked) token with this value, noting its use at most once a minute."""
    row = conn.execute(
        "SELECT id, name, role, units, hint, created_at, last_used_at, revoked_at FROM api_tokens"
        " WHERE token_sha256 = %s AND revoked_at IS NULL",
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


def list_tokens(conn: psycopg.Connection[Any], include_revoked: bool = False) -> list[TokenRow]:
    """Tokens by id, live ones only unless asked."""
    rows = conn.execute(
        "SELECT id, name, role, units, hint, created_at, last_used_at, revoked_at FROM api_tokens"
        " WHERE %s OR revoked_at IS NULL ORDER BY id",
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
