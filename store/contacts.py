"""One contact by id, as a test message to it needs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class ContactCard:
    """A contact's addresses and locale, and where it belongs (its unit, else its district)."""

    id: int
    name: str
    phone: str | None
    email: str | None
    locale: str
    where: str  # the CHECK on contacts: a unit or a district


def get_contact(conn: psycopg.Connection[Any], contact_id: int) -> ContactCard | None:
    """The contact with this id; None: no such contact."""
    row = conn.execute(
        "SELECT c.id, c.name, c.phone, c.email, c.locale, coalesce(c.unit_id, c.district)"
        " FROM contacts c WHERE c.id = %s",
        (contact_id,),
    ).fetchone()
    return None if row is None else ContactCard(*row)
