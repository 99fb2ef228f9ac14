"""What operators' actions write: acknowledge, resolve, verify and close an alert, cancel its
follow-ups.

Each update applies only to an alert in a state the action fits; the caller (alerts.actions)
holds the transaction and records the alert_events entry.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg


def cancel_followups(conn: psycopg.Connection[Any], alert_id: int) -> int:
    """Cancel the alert's pending escalations and reminders; return how many."""
    cur = conn.execute(
        "UPDATE notifications SET state = 'cancelled', last_error = 'acknowledged'"
        " WHERE alert_id = %s AND state IN ('pending', 'failed') AND kind IN ('escalation', 'reminder')",
        (alert_id,),
    )
    return cur.rowcount


def acknowledge(conn: psycopg.Connection[Any], alert_id: int, actor: str) -> bool:
    """Acknowledge a firing or resolved alert not yet acknowledged; False: none such."""
    row = conn.execute(
        "UPDATE alerts SET state = CASE WHEN state = 'firing' THEN 'acknowledged' ELSE state END,"
        " acknowledged_at = now(), acknowledged_by = %s, next_escalation_at = NULL,"
        " updated_at = now() WHERE id = %s AND state IN ('firing', 'resolved')"
        " AND acknowledged_at IS NULL RETURNING id",
        (actor, alert_id),
    ).fetchone()
    return row is not None


def resolve(conn: psycopg.Connection[Any], alert_id: int, actor: str) -> bool:
    """Resolve a firing or acknowledged alert by hand (acknowledging it too); False: none such."""
    row = conn.execute(
        "UPDATE alerts SET state = 'resolved', resolved_by = %s, next_escalation_at = NULL,"
        " acknowledged_at = coalesce(acknowledged_at, now()),"
        " acknowledged_by = coalesce(acknowledged_by, %s), updated_at = now()"
        " WHERE id = %s AND state IN ('firing', 'acknowledged') RETURNING id",
        (actor, actor, alert_id),
    ).fetchone()
    return row is not None


def verify(
    conn: psycopg.Connection[Any],
    alert_id: int,
    actor: str,
    *,
    verification: str,
    cause: str | None,
) -> bool:
    """Record an alert's verification (acknowledging it too); False: it is closed or verified."""
    row = conn.execute(
        "UPDATE alerts SET verification = %s, false_alarm_cause = %s, verified_at = now(),"
        " verified_by = %s, next_escalation_at = NULL,"
        " state = CASE WHEN state = 'firing' THEN 'acknowledged' ELSE state END,"
        " acknowledged_at = coalesce(acknowledged_at, now()),"
        " acknowledged_by = coalesce(acknowledged_by, %s), updated_at = now()"
        " WHERE id = %s AND verification IS NULL AND state <> 'closed'"
        " RETURNING id",
        (verification, cause, actor, actor, alert_id),
    ).fetchone()
    return row is not None


def close(conn: psycopg.Connection[Any], alert_id: int, actor: str) -> None:
    """Close the alert (acknowledging it too); a verification is recorded before by verify()."""
    conn.execute(
        "UPDATE alerts SET state = 'closed', closed_at = now(), closed_by = %s,"
        " next_escalation_at = NULL, acknowledged_at = coalesce(acknowledged_at, now()),"
        " acknowledged_by = coalesce(acknowledged_by, %s), updated_at = now() WHERE id = %s",
        (actor, actor, alert_id),
    )


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """An operator's resolve or close, as the rule engine learns of it."""

    id: int
    rule_id: str
    device_num: int
    point_key: str
    kind: str
    at: dt.datetime


_ACTIONS = (
    "SELECT e.id, a.rule_id, a.device_num, a.point_key, e.kind, e.at FROM alert_events e"
    " JOIN alerts a ON a.id = e.alert_id WHERE e.id > %s AND e.at > %s"
    " AND e.kind IN ('resolved', 'closed') AND e.actor <> 'engine' ORDER BY e.id LIMIT 1000"
)


def operator_actions(
    conn: psycopg.Connection[Any], after_id: int, since: dt.datetime
) -> list[OperatorAction]:
    """Resolves and closes by people (not the engine) after history id `after_id`, at most
    1000, oldest first; `since` bounds the first look after a start."""
    rows = conn.execute(_ACTIONS, (after_id, since)).fetchall()
    return [OperatorAction(int(r[0]), r[1], int(r[2]), r[3], r[4], r[5]) for r in rows]
