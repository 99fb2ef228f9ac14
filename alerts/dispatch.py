"""The dispatcher: the routing and receivers alerts are planned with, and who is reachable."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from alerts.planner import DispatchOptions
from store import alert_plan
from store.alerts import ContactRow

__all__ = ["DispatchOptions", "Dispatcher"]


class Dispatcher:
    """Holds the options alert plans are made with, and reads the contacts of units."""

    def __init__(self, opts: DispatchOptions) -> None:
        self.opts = opts

    def contacts(
        self, conn: psycopg.Connection[Any], unit_ids: Iterable[str]
    ) -> dict[str, list[ContactRow]]:
        """Contacts of each unit (its own and its district's), in one query."""
        units = set(unit_ids)
        return alert_plan.contacts_of_units(conn, units) if units else {}
