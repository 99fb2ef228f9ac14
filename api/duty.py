"""Duty log endpoints (值班日志): the log, start a shift, a note, end it with the handover."""

from __future__ import annotations

from typing import Any

import psycopg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Permission
from api.routing import PREFIX, ApiError, Call, Route, json_response
from store import duty as store
from store.duty import Shift


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DutyQuery(_In):
    """GET /duty: how many shifts, newest first."""

    limit: int = Field(default=30, ge=1, le=500)


class NoteBody(_In):
    """A note on the caller's open shift."""

    text: str = Field(min_length=1, max_length=4000)


class EndBody(_In):
    """The handover: what the next shift must know, and to whom it is handed."""

    handover_note: str = Field(min_length=1, max_length=4000)
    handed_to: str = Field(default="", max_length=200)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class DutyLog(_Out):
    """The caller's open shift (if any), the last handover, and the latest shifts."""

    mine: Shift | None
    last_handover: Shift | None
    shifts: list[Shift]


class ShiftOut(_Out):
    """One shift."""

    shift: Shift


def _log(conn: psycopg.Connection[Any], operator: str, limit: int) -> DutyLog:
    latest = store.shifts(conn, limit=limit)
    ended = [s for s in latest if s.ended_at is not None]
    last = max(ended, key=lambda s: s.ended_at or s.started_at) if ended else None
    return DutyLog(mine=store.open_shift(conn, operator), last_handover=last, shifts=latest)


async def duty_log(call: Call) -> web.StreamResponse:
    """GET /duty."""
    limit = call.q(DutyQuery).limit
    return json_response(await call.state.db(_log, call.who.name, limit))


def _mine(conn: psycopg.Connection[Any], operator: str) -> Shift:
    s = store.open_shift(conn, operator)
    if s is None:
        raise ApiError(409, "conflict", f"{operator} has no shift open: start one first")
    return s


def _refresh(conn: psycopg.Connection[Any], shift_id: int) -> Shift:
    s = store.get(conn, shift_id)
    assert s is not None  # shifts are never deleted
    return s


async def start_shift(call: Call) -> web.StreamResponse:
    """POST /duty/start."""
    who = call.who.name

    def run(conn: psycopg.Connection[Any]) -> Shift:
        with conn.transaction():
            shift_id = store.start(conn, who)
            if shift_id is None:
                open_ = store.open_shift(conn, who)
                since = open_.started_at.isoformat(timespec="seconds") if open_ else "?"
                raise ApiError(409, "conflict", f"{who} is on duty since {since}: end it first")
            return _refresh(conn, shift_id)

    return json_response(ShiftOut(shift=await call.state.db(run)), status=201)


async def add_note(call: Call) -> web.StreamResponse:
    """POST /duty/note."""
    body = call.b(NoteBody)
    who = call.who.name

    def run(conn: psycopg.Connection[Any]) -> Shift:
        with conn.transaction():
            s = _mine(conn, who)
            store.add_note(conn, s.id, who, body.text)
            return _refresh(conn, s.id)

    return json_response(ShiftOut(shift=await call.state.db(run)), status=201)


async def end_shift(call: Call) -> web.StreamResponse:
    """POST /duty/end."""
    body = call.b(EndBody)
    who = call.who.name

    def run(conn: psycopg.Connection[Any]) -> Shift:
        with conn.transaction():
            s = _mine(conn, who)
            if not store.end(conn, s.id, body.handover_note, body.handed_to, store.open_now(conn)):
                raise ApiError(409, "conflict", f"shift {s.id} was ended meanwhile")
            return _refresh(conn, s.id)

    return json_response(ShiftOut(shift=await call.state.db(run)))


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/duty",
        duty_log,
        "The duty log: the caller's open shift, the last handover, the latest shifts with "
        "their notes and what was open at each handover",
        Permission.ALERTS_ACT,
        "duty",
        query=DutyQuery,
        response=DutyLog,
    ),
    Route(
        "POST",
        f"{PREFIX}/duty/start",
        start_shift,
        "Go on duty (the token's name); 409 when already on duty",
        Permission.ALERTS_ACT,
        "duty",
        response=ShiftOut,
        status=201,
    ),
    Route(
        "POST",
        f"{PREFIX}/duty/note",
        add_note,
        "A note on the caller's open shift",
        Permission.ALERTS_ACT,
        "duty",
        body=NoteBody,
        response=ShiftOut,
        status=201,
    ),
    Route(
        "POST",
        f"{PREFIX}/duty/end",
        end_shift,
        "Hand over: the note, to whom; what is open now is recorded with it",
        Permission.ALERTS_ACT,
        "duty",
        body=EndBody,
        response=ShiftOut,
    ),
]
