"""Forwarding fires to the 119 command centre (GB 50440): the forwarding's body, and the pass
that escalates fire alarms nobody verified in time.

GB 50440 asks a monitoring centre to forward a fire alarm its operator confirmed to 119 within
3 s. The forwarding is a notification row of channel 'fire_119', queued in the transaction that
records the verification and delivered by the outbox (woken by the commit's NOTIFY) as a
signed JSON POST, retried until it goes through even after the alert is acknowledged; the
alert's history says when it was queued and when 119 took it. A fire alarm nobody verified
within `verify_within_s` of opening is escalated once to every party of its route, and, when
the policy says so, forwarded as unverified (a later confirmation is forwarded too).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from alerts.lifecycle import snapshot_of, write_planned
from alerts.planner import DispatchOptions, plan_unverified, point_words
from alerts.shape import AlertObject, Message
from store import alert_queries
from store import alerts as store_alerts
from store import fire_119 as store_fire_119
from store.alert_queries import UnitContact
from store.alerts import AlertView
from store.fire_119 import UnitPlace

Forwarded = Literal["confirmed_fire", "unverified"]


@dataclass(frozen=True, slots=True)
class Fire119Options:
    """Whether and how fires are forwarded, and when an unverified fire alarm escalates."""

    receiver: str | None = None  # the configured 119 receiver's name; None: no forwarding
    centre: str = ""  # the forwarding monitoring centre, as 119 is told
    verify_within_s: float = 180.0
    forward_unverified: bool = False
    timezone: str = "Asia/Shanghai"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ForwardUnit(_Frozen):
    """The unit on fire, as a fire engine finds it."""

    id: str
    name: str
    address: str
    district: str
    grid: str
    category: str
    lat: float | None
    lon: float | None


class ForwardContact(_Frozen):
    """Someone 119 can call about the unit (its own people first, then its district's)."""

    name: str
    role: str
    phone: str | None


class FireForward(_Frozen):
    """The body POSTed to the 119 receiver (docs/fire-119.schema.json)."""

    version: Literal["1"] = "1"
    kind: Literal["fire_119"] = "fire_119"
    verification: Forwarded = Field(
        description="confirmed_fire: an operator confirmed it; unverified: nobody had verified "
        "it within the configured time (policy forward_unverified)"
    )
    centre: str = Field(description="the monitoring centre forwarding it")
    message: Message
    unit: ForwardUnit
    location: str = Field(description="where in the unit: the device's place and the detector")
    operator: str | None = Field(description="who confirmed it (None when unverified)")
    verified_at: dt.datetime | None
    forwarded_at: dt.datetime = Field(description="when the forwarding was queued")
    contacts: list[ForwardContact]
    alert: AlertObject
    idempotency_key: str | None = Field(
        default=None, description="the notification's key: a receiver that has seen it has it"
    )


def waited(seconds: float) -> tuple[str, str]:
    """A verification deadline in words (en, zh-CN): "3 min", "3 分钟"; "90 s" below 2 min."""
    if seconds < 120:
        return f"{seconds:g} s", f"{seconds:g} 秒"
    return f"{seconds / 60:g} min", f"{seconds / 60:g} 分钟"


def _location(a: AlertView, locale: str) -> str:
    point = point_words(a.point, a.loop, a.point_text, locale)
    return " ".join(x for x in (a.device_location, point) if x)


def forward_body(
    a: AlertView,
    place: UnitPlace,
    contacts: Sequence[UnitContact],
    verification: Forwarded,
    opts: Fire119Options,
    now: dt.datetime,
) -> dict[str, Any]:
    """The forwarding of one alert, as JSON-ready data."""
    local = now.astimezone(ZoneInfo(opts.timezone)).strftime("%H:%M:%S")
    where_en, where_zh = _location(a, "en"), _location(a, "zh-CN")
    if verification == "confirmed_fire":
        en = (
            f"Confirmed fire at {a.unit_name}, {a.unit_address}: {where_en}. "
            f"Confirmed by {a.verified_by} at {local}."
        )
        zh = (
            f"确认火警：{a.unit_name}，地址：{a.unit_address}，位置：{where_zh}；"
            f"{a.verified_by} {local} 确认。"
        )
    else:
        span_en, span_zh = waited(opts.verify_within_s)
        en = (
            f"Unverified fire alarm at {a.unit_name}, {a.unit_address}: {where_en}; "
            f"not verified within {span_en}."
        )
        zh = (
            f"未确认火警：{a.unit_name}，地址：{a.unit_address}，位置：{where_zh}；"
            f"{span_zh}内无人确认。"
        )
    body = FireForward(
        verification=verification,
        centre=opts.centre,
        message=Message(en=en, zh_CN=zh),
        unit=ForwardUnit(
            id=a.unit_id,
            name=a.unit_name,
            address=a.unit_address,
            district=a.district,
            grid=place.grid,
            category=place.category,
            lat=place.lat,
            lon=place.lon,
        ),
        location=where_zh or where_en,
        operator=a.verified_by if verification == "confirmed_fire" else None,
        verified_at=a.verified_at if verification == "confirmed_fire" else None,
        forwarded_at=now,
        contacts=[ForwardContact(name=c.name, role=c.role, phone=c.phone) for c in contacts],
        alert=AlertObject.of(a, at=a.opened_at),
    )
    return body.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})


def forward(
    conn: psycopg.Connection[Any], a: AlertView, verification: Forwarded, opts: Fire119Options
) -> int | None:
    """Queue the alert's forwarding to 119 in the caller's transaction, once per verification;
    return the notification's id (None: no 119 receiver, or forwarded already)."""
    if opts.receiver is None or store_fire_119.forwarded(conn, a.id, verification):
        return None
    contacts = alert_queries.unit_contacts(conn, [a.unit_id])[a.unit_id]
    body = forward_body(
        a,
        store_fire_119.place(conn, a.unit_id),
        contacts,
        verification,
        opts,
        dt.datetime.now(dt.UTC),
    )
    nid = store_fire_119.queue(conn, a.id, opts.receiver, body)
    store_alerts.record_event(
        conn, a.id, "forwarding_119", comment=f"{verification} to {opts.receiver} #{nid}"
    )
    return nid


def unverified_message(a: AlertView, seconds: float) -> tuple[str, str]:
    """What the parties are told of a fire alarm nobody verified in time (en, zh-CN)."""
    en, zh = waited(seconds)
    return (
        f"Fire alarm at {a.unit_name} ({a.device_id}) not verified within {en}: "
        "call the unit and verify it now",
        f"火警{zh}内未确认：{a.unit_name}（{a.device_id}），请立即电话核实",
    )


def run_unverified(
    conn: psycopg.Connection[Any], dispatch: DispatchOptions, opts: Fire119Options
) -> int:
    """Escalate (and by policy forward) fire alarms left unverified, in one transaction;
    return how many."""
    with conn.transaction():
        rows = store_fire_119.take_unverified(conn, opts.verify_within_s)
        if not rows:
            return 0
        within = opts.verify_within_s
        snap = snapshot_of(conn, {(r.device_num, r.rule_id, r.point_key): r for r in rows}, ())
        messages = {r.id: unverified_message(r, within) for r in rows}
        now = dt.datetime.now(dt.UTC)
        write_planned(conn, plan_unverified(rows, messages, waited(within)[0], snap, dispatch, now))
        if opts.forward_unverified:
            for r in rows:
                forward(conn, r, "unverified", opts)
    return len(rows)


def forward_schema() -> dict[str, Any]:
    """The JSON schema of the forwarding's body (docs/fire-119.schema.json)."""
    return FireForward.model_json_schema(by_alias=True)
