"""Queries `firesentry demo` needs to seed its units again without adding them twice."""

from __future__ import annotations

from typing import Any

import psycopg


def unit_has_contacts(conn: psycopg.Connection[Any], unit_id: str) -> bool:
    """Whether any contact belongs to this unit."""
    row = conn.execute("SELECT 1 FROM contacts WHERE unit_id = %s LIMIT 1", (unit_id,)).fetchone()
    return row is not None
