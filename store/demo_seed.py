"""Queries `firesentry demo` needs to seed its units again without adding them twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class DemoContact:
    """A party the demo tells of its alerts: who, in which role, at which number, in which
    language."""

    name: str
    role: str
    phone: str
    locale: str
    unit_id: str | None = None
    district: str | None = None


def put_contact(conn: psycopg.Connection[Any], c: DemoContact) -> None:
    """Make the demo's contact of this role at this unit (or district) the given one.

    An existing contact of the role is updated in place rather than replaced: notifications of
    an earlier demo refer to it."""
    updated = conn.execute(
        "UPDATE contacts SET name = %s, phone = %s, locale = %s"
        " WHERE id = (SELECT min(id) FROM contacts WHERE role = %s"
        " AND unit_id IS NOT DISTINCT FROM %s AND district IS NOT DISTINCT FROM %s)",
        (c.name, c.phone, c.locale, c.role, c.unit_id, c.district),
    ).rowcount
    if not updated:
        conn.execute(
            "INSERT INTO contacts (unit_id, district, name, role, phone, locale)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (c.unit_id, c.district, c.name, c.role, c.phone, c.locale),
        )
