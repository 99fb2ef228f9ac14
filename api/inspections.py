"""Inspection endpoints (扫码检查): the checklist, record an inspection at a unit, list them,
count them per inspector."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import psycopg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Permission
from api.routing import PREFIX, ApiError, Call, Route, json_response, not_found
from store import inspections as store
from store import units as store_units
from supervision.hazard_loop import report
from supervision.inspections import Answer, Checklist, IncompleteInspection, judge

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnswerIn(_In):
    """One item's answer."""

    item: str = Field(max_length=64)
    ok: bool
    note: str = Field(default="", max_length=500, description="what was seen (a failed item's)")


class InspectionCreate(_In):
    """A filled checklist: every item once; `code` is the unit's code as scanned on site."""

    results: list[AnswerIn] = Field(max_length=100)
    code: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="the code of the sticker scanned at the unit (from /u/<code>); it must "
        "be this unit's",
    )
    comment: str = Field(default="", max_length=2000)
    client_ref: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="the phone's id of this submission: sent again, it finds the first",
    )


class InspectionQuery(_In):
    """GET /inspections: a unit's or a district's, over a period."""

    unit: Id | None = None
    district: str | None = Field(default=None, max_length=100)
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class InspectionOut(_Out):
    """A recorded inspection; `created` false: it had been recorded already (a resend)."""

    inspection: store.InspectionRow
    created: bool


class InspectionList(_Out):
    """Inspections newest first, and what each inspector did in the same period."""

    items: list[store.InspectionRow]
    by_inspector: list[store.InspectorCount]


async def checklist(call: Call) -> web.StreamResponse:
    """GET /inspections/checklist."""
    return json_response(call.state.options.checklist)


def _record(
    conn: psycopg.Connection[Any], call: Call, unit_id: str, body: InspectionCreate
) -> tuple[store.InspectionRow, bool] | str | None:
    """Record the inspection and its failures' hazards in one transaction; a str is a 422."""
    opts = call.state.options
    cl: Checklist = opts.checklist
    try:
        ordered, failures = judge(cl, [Answer(a.item, a.ok, a.note) for a in body.results])
    except IncompleteInspection as exc:
        return str(exc)
    with conn.transaction():
        found = store_units.unit_codes(conn, unit_id=unit_id)
        if not found:
            return None
        if body.code is not None and body.code != found[0].qr_token:
            return (
                f"the scanned code is not unit {unit_id}'s: check the sticker at this door "
                "(it may be another shop's)"
            )
        now = dt.datetime.now(dt.UTC)
        new = store.NewInspection(
            unit_id,
            call.who.name,
            scanned=body.code is not None,
            checklist_version=cl.version,
            results=[{"item": a.item, "ok": a.ok, "note": a.note} for a in ordered],
            failed=len(failures),
            comment=body.comment,
            client_ref=body.client_ref,
        )
        inspection_id = store.insert(conn, new)
        if inspection_id is None:
            assert body.client_ref is not None  # only a resend collides
            first = store.by_ref(conn, unit_id, body.client_ref)
            assert first is not None
            return first, False
        hazard_ids = [
            report(
                conn,
                opts.hazards,
                unit_id=unit_id,
                category=f.category,
                severity=f.severity,
                description=f.description,
                found_by=call.who.name,
                now=now,
            ).id
            for f in failures
        ]
        store.set_hazards(conn, inspection_id, hazard_ids)
        row = store.get(conn, inspection_id)
        assert row is not None
        return row, True


async def create_inspection(call: Call) -> web.StreamResponse:
    """POST /units/{id}/inspections."""
    unit_id = call.request.match_info["id"]
    if not call.who.sees_unit(unit_id):
        raise not_found(f"unit {unit_id}")
    body = call.b(InspectionCreate)
    out = await call.state.db(_record, call, unit_id, body)
    if out is None:
        raise not_found(f"unit {unit_id}")
    if isinstance(out, str):
        raise ApiError(422, "invalid", out)
    row, created = out
    return json_response(InspectionOut(inspection=row, created=created), 201 if created else 200)


async def list_inspections(call: Call) -> web.StreamResponse:
    """GET /inspections."""
    iq = call.q(InspectionQuery)
    f = store.InspectionFilter(iq.unit, iq.district, iq.since, iq.until, call.who.scope)

    def load(conn: psycopg.Connection[Any]) -> InspectionList:
        return InspectionList(
            items=store.search(conn, f, iq.limit), by_inspector=store.by_inspector(conn, f)
        )

    return json_response(await call.state.db(load))


ROUTES = [
    Route(
        "GET",
        f"{PREFIX}/inspections/checklist",
        checklist,
        "The checklist an inspection answers (supervision.inspection_checklist): each item "
        "with the hazard category and severity its failure becomes",
        Permission.HAZARDS_READ,
        "inspections",
        response=Checklist,
    ),
    Route(
        "GET",
        f"{PREFIX}/inspections",
        list_inspections,
        "Inspections (unit, district, since, until) newest first, and per inspector: "
        "inspections, from the unit's code, units, failed items, hazards raised and closed",
        Permission.HAZARDS_READ,
        "inspections",
        query=InspectionQuery,
        response=InspectionList,
    ),
    Route(
        "POST",
        f"{PREFIX}/units/{{id}}/inspections",
        create_inspection,
        "Record an inspection at the unit (inspector: the token's name): every checklist item "
        "once; each failed item becomes a hazard; `code` (scanned on site) must be the unit's; "
        "a resend with the same client_ref answers 200 with the first",
        Permission.HAZARDS_ACT,
        "inspections",
        body=InspectionCreate,
        response=InspectionOut,
        status=201,
        path_params={"id": "the unit's id"},
    ),
]
