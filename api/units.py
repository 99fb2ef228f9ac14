"""Unit and device endpoints: overview, one unit's devices, open alerts and thresholds."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from aiohttp import web

from api.alerts import contacts_out
from api.auth import Permission
from api.models import (
    AlertOut,
    DeviceList,
    DeviceOut,
    DevicesQuery,
    GradeChangeOut,
    GradeHistory,
    GradeReasonOut,
    ThresholdLine,
    UnitDetail,
    UnitEventOut,
    UnitEvents,
    UnitEventsQuery,
    UnitList,
    UnitOut,
    UnitsQuery,
)
from api.routing import PREFIX, ApiError, Call, Route, json_response, not_found
from devices.catalog import EVENT_KIND_BY_ID, EVENT_KIND_IDS, DeviceType
from rules.model import AttributeThreshold, RuleFile, Threshold
from store import alert_queries as q
from store import grades as store_grades
from store import unit_events
from store import units as store_units
from store.registry import DeviceView
from supervision.grader import grade_now


def _level(th: Threshold | None, attrs: dict[str, Any]) -> float | None:
    if th is None:
        return None
    if isinstance(th, AttributeThreshold):
        raw = attrs.get(th.attribute, th.default)
        try:
            return float(raw) * th.factor
        except (TypeError, ValueError):
            return th.default * th.factor
    return float(th)


def thresholds(rules: RuleFile, device: DeviceView) -> dict[str, list[ThresholdLine]]:
    """The levels the rules check each metric of a device against, per metric."""
    out: dict[str, list[ThresholdLine]] = {}
    dtype = DeviceType(device.type)
    for r in rules.rules:
        if r.metric is None or not r.applies_to(dtype):
            continue
        pairs: list[tuple[str, Threshold | None]] = (
            [("low", r.low), ("high", r.high)]
            if r.kind == "outside"
            else [(r.kind, r.threshold)]
            if r.kind in ("above", "below")
            else []
        )
        for kind, th in pairs:
            value = _level(th, device.attributes)
            if value is not None:
                out.setdefault(r.metric, []).append(
                    ThresholdLine(
                        rule_id=r.id,
                        kind=kind,  # type: ignore[arg-type]
                        value=value,
                        severity=r.severity.value,
                    )
                )
    return out


def _unit_out(u: store_units.UnitSummary) -> UnitOut:
    return UnitOut.model_validate(u)


async def list_units(call: Call) -> web.StreamResponse:
    """GET /units."""
    uq = call.q(UnitsQuery)
    units = await call.state.db(store_units.list_units, call.who.scope, district=uq.district)
    return json_response(UnitList(items=[_unit_out(u) for u in units]))


async def get_unit(call: Call) -> web.StreamResponse:
    """GET /units/{id}."""
    unit_id = call.request.match_info["id"]
    if not call.who.sees_unit(unit_id):
        raise not_found(f"unit {unit_id}")
    rules = call.state.options.rules
    clear = call.who.may(Permission.CONTACTS_READ)

    def load(conn: psycopg.Connection[Any]) -> UnitDetail | None:
        found = store_units.list_units(conn, unit_id=unit_id)
        if not found:
            return None
        devices = store_units.list_devices(conn, unit_id=unit_id)
        alerts, _ = q.search_alerts(
            conn, q.AlertFilter(states=q.OPEN_STATES, unit_id=unit_id), limit=500
        )
        return UnitDetail(
            unit=_unit_out(found[0]),
            devices=[DeviceOut.of(d) for d in devices],
            open_alerts=[AlertOut.of(a) for a in alerts],
            thresholds={d.id: thresholds(rules, d) for d in devices},
            contacts=contacts_out(q.unit_contacts(conn, [unit_id])[unit_id], clear),
        )

    detail = await call.state.db(load)
    if detail is None:
        raise not_found(f"unit {unit_id}")
    return json_response(detail)


EVENTS_SPAN = dt.timedelta(days=7)


async def get_unit_events(call: Call) -> web.StreamResponse:
    """GET /units/{id}/events."""
    unit_id = call.request.match_info["id"]
    if not call.who.sees_unit(unit_id):
        raise not_found(f"unit {unit_id}")
    eq = call.q(UnitEventsQuery)
    since = eq.since or dt.datetime.now(dt.UTC) - EVENTS_SPAN
    kinds = [EVENT_KIND_IDS[k] for k in eq.kind] or None

    def load(conn: psycopg.Connection[Any]) -> list[unit_events.UnitEvent] | None:
        if not store_units.list_units(conn, unit_id=unit_id):
            return None
        return unit_events.recent_events(conn, unit_id, since, kinds=kinds, limit=eq.limit)

    found = await call.state.db(load)
    if found is None:
        raise not_found(f"unit {unit_id}")
    items = [
        UnitEventOut(
            ts=e.ts,
            device_id=e.device_id,
            device_location=e.device_location,
            seq=e.seq,
            kind=EVENT_KIND_BY_ID[e.kind],
            loop=e.loop,
            point=e.point,
            text=e.text,
        )
        for e in found
        if e.kind in EVENT_KIND_BY_ID
    ]
    return json_response(UnitEvents(unit_id=unit_id, items=items))


GRADE_HISTORY_LIMIT = 200


def _history(conn: psycopg.Connection[Any], unit_id: str) -> GradeHistory | None:
    found = store_units.list_units(conn, unit_id=unit_id)
    if not found:
        return None
    u = found[0]
    return GradeHistory(
        unit_id=unit_id,
        grade=u.grade,  # type: ignore[arg-type]
        score=u.grade_score,
        since=u.grade_since,
        reasons=[GradeReasonOut.model_validate(r) for r in u.grade_reasons],
        changes=[
            GradeChangeOut.model_validate(c)
            for c in store_grades.grade_history(conn, unit_id, GRADE_HISTORY_LIMIT)
        ],
    )


async def get_unit_grades(call: Call) -> web.StreamResponse:
    """GET /units/{id}/grades."""
    unit_id = call.request.match_info["id"]
    if not call.who.sees_unit(unit_id):
        raise not_found(f"unit {unit_id}")
    found = await call.state.db(_history, unit_id)
    if found is None:
        raise not_found(f"unit {unit_id}")
    return json_response(found)


async def grade_unit_now(call: Call) -> web.StreamResponse:
    """POST /units/{id}/grade."""
    unit_id = call.request.match_info["id"]
    if not call.who.sees_unit(unit_id):
        raise not_found(f"unit {unit_id}")
    model = call.state.options.risk_model
    trigger = f"request:{call.who.name}"

    def run(conn: psycopg.Connection[Any]) -> GradeHistory | None:
        now = dt.datetime.now(dt.UTC)
        graded = grade_now(conn, model, now, units=[unit_id], trigger=trigger, wait=True)
        return _history(conn, unit_id) if graded.grades else None  # no such unit

    found = await call.state.db(run)
    if found is None:
        raise not_found(f"unit {unit_id}")
    return json_response(found)


async def list_devices(call: Call) -> web.StreamResponse:
    """GET /devices."""
    dq = call.q(DevicesQuery)
    if dq.unit is not None and not call.who.sees_unit(dq.unit):
        raise ApiError(403, "forbidden", f"this token does not cover unit {dq.unit}")
    devices = await call.state.db(
        store_units.list_devices,
        call.who.scope,
        unit_id=dq.unit,
        status=dq.status,
        device_type=dq.type,
    )
    return json_response(DeviceList(items=[DeviceOut.of(d) for d in devices]))


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/units",
        list_units,
        "Units with device liveness counts, open alerts and the worst open severity",
        Permission.UNITS_READ,
        "units",
        query=UnitsQuery,
        response=UnitList,
    ),
    Route(
        "GET",
        f"{PREFIX}/units/{{id}}",
        get_unit,
        "One unit: its devices with status, its open alerts, each metric's thresholds, its "
        "contacts (phone and e-mail masked without contacts:read)",
        Permission.UNITS_READ,
        "units",
        response=UnitDetail,
        path_params={"id": "the unit's id"},
    ),
    Route(
        "GET",
        f"{PREFIX}/units/{{id}}/events",
        get_unit_events,
        "The unit's device events, newest first (default: the last 7 days): fire alarms, "
        "faults, supervisory, shield, start, feedback … with loop, point and the panel's text",
        Permission.UNITS_READ,
        "units",
        query=UnitEventsQuery,
        response=UnitEvents,
        path_params={"id": "the unit's id"},
    ),
    Route(
        "GET",
        f"{PREFIX}/units/{{id}}/grades",
        get_unit_grades,
        "The unit's four-colour risk grade (红/橙/黄/蓝) with its reasons, and its changes, "
        "newest first",
        Permission.UNITS_READ,
        "units",
        response=GradeHistory,
        path_params={"id": "the unit's id"},
    ),
    Route(
        "POST",
        f"{PREFIX}/units/{{id}}/grade",
        grade_unit_now,
        "Grade the unit now from its live data (the engine also grades every unit on a "
        "schedule); a change is recorded with the token's name",
        Permission.UNITS_READ,
        "units",
        response=GradeHistory,
        path_params={"id": "the unit's id"},
    ),
    Route(
        "GET",
        f"{PREFIX}/devices",
        list_devices,
        "Devices with their computed status (e.g. ?status=offline)",
        Permission.UNITS_READ,
        "units",
        query=DevicesQuery,
        response=DeviceList,
    ),
]
