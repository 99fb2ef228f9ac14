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


DEMO_HISTORY_ACTOR = "demo-history"


@dataclass(frozen=True, slots=True)
class PastAlert:
    """An alert of the demo's past week: opened and cleared hours ago, closed by the demo."""

    device_id: str
    rule_id: str
    severity: str
    opened_h_ago: float
    lasted_h: float
    verification: str | None = None
    cause: str | None = None


def put_history(conn: psycopg.Connection[Any], alerts: list[PastAlert]) -> int:
    """Give the demo units a past week to grade (once a week: kept while it is recent).

    Returns how many alerts were added (0 when an earlier demo's week still lies in the window).
    """
    recent = conn.execute(
        "SELECT 1 FROM alerts WHERE closed_by = %s AND opened_at > now() - interval '5 days'",
        (DEMO_HISTORY_ACTOR,),
    ).fetchone()
    if recent:
        return 0
    for a in alerts:
        conn.execute(
            "INSERT INTO alerts (device_num, unit_id, rule_id, severity, state, opened_at,"
            " last_seen_at, cleared_at, closed_at, closed_by, verification, false_alarm_cause,"
            " needs_verification, message_en, message_zh)"
            " SELECT d.num, d.unit_id, %(rule)s, %(sev)s, 'closed', o, o + l, o + l, o + l,"
            " %(actor)s, %(ver)s, %(cause)s, %(rule)s = 'fire_alarm', %(en)s, %(zh)s"
            " FROM devices d, LATERAL (SELECT now() - make_interval(secs => %(ago)s) AS o,"
            " make_interval(secs => %(lasted)s) AS l) t WHERE d.id = %(dev)s",
            {
                "rule": a.rule_id,
                "sev": a.severity,
                "actor": DEMO_HISTORY_ACTOR,
                "ver": a.verification,
                "cause": a.cause,
                "ago": a.opened_h_ago * 3600,
                "lasted": a.lasted_h * 3600,
                "dev": a.device_id,
                "en": f"{a.rule_id} (the demo's past week)",
                "zh": f"{a.rule_id}（演示数据：过去一周）",
            },
        )
    return len(alerts)
