"""Turn rule transitions into alert rows, history lines and outbox rows, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog

from alerts.dispatch import Dispatcher
from devices.catalog import EventKind
from devices.registry import Registry
from rules.engine import Transition
from store import alerts as store_alerts

log = structlog.get_logger("alerts")


@dataclass(slots=True)
class Outcome:
    """What applying a batch of transitions did."""

    opened: int = 0
    repeated: int = 0
    cleared: int = 0
    notifications: int = 0


def _fmt(template: str, **values: Any) -> str:
    try:
        return template.format(**values)
    except (KeyError, ValueError, IndexError):
        return template  # a broken template must not lose the alert


def _iso(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def alert_payload(
    status: str, alert_id: int, tr: Transition, registry: Registry, count: int, en: str, zh: str
) -> dict[str, Any]:
    """Build the JSON body sent to receivers for one alert change."""
    device = registry.by_num.get(tr.device_num)
    rule = tr.rule
    # Event rules have no measured value; rate and deadman report the rate and the silence.
    return {
        "version": "1",
        "status": status,
        "alert": {
            "id": alert_id,
            "rule_id": rule.id,
            "severity": str(rule.severity),
            "device_id": device.id if device else None,
            "device_type": str(device.type) if device else None,
            "unit_id": device.unit_id if device else None,
            "unit_name": device.unit_name if device else None,
            "metric": rule.metric or (str(rule.event) if rule.event else None),
            "value": tr.value if rule.kind != "event" else None,
            "threshold": None if tr.threshold != tr.threshold else tr.threshold,
            "at": _iso(tr.ts_ms),
            "count": count,
            "message": {"en": en, "zh-CN": zh},
        },
    }


def apply_transitions(
    conn: psycopg.Connection[Any],
    transitions: Sequence[Transition],
    registry: Registry,
    dispatcher: Dispatcher,
) -> Outcome:
    """Record each transition on its alert and queue notifications for its parties."""
    out = Outcome()
    for tr in transitions:
        device = registry.by_num.get(tr.device_num)
        if device is None:
            continue
        rule = tr.rule
        at = dt.datetime.fromtimestamp(tr.ts_ms / 1000, dt.UTC)
        values = {
            "device": device.id,
            "unit": device.unit_name or device.unit_id,
            "metric": rule.metric or "",
            # "falling 0.4 MPa/min" reads better than a signed rate; the payload keeps the sign.
            "value": abs(tr.value) if rule.kind == "rate" else tr.value,
            "threshold": tr.threshold if tr.threshold == tr.threshold else 0.0,
        }
        en = _fmt(rule.message.en, **values)
        zh = _fmt(rule.message.zh_cn, **values)
        value = tr.value if rule.kind != "event" else None
        if tr.opened:
            row = store_alerts.open_or_repeat(
                conn,
                store_alerts.AlertOpen(
                    tr.device_num,
                    device.unit_id,
                    rule.id,
                    str(rule.severity),
                    rule.metric,
                    tr.threshold if tr.threshold == tr.threshold else None,
                    value,
                    at,
                    en,
                    zh,
                    needs_verification=rule.kind == "event" and rule.event == EventKind.FIRE_ALARM,
                ),
            )
            if row.previous_state in (None, "resolved"):
                kind = "opened" if row.previous_state is None else "refired"
                out.opened += 1
                store_alerts.record_event(conn, row.id, kind, value=value)
                payload = alert_payload("firing", row.id, tr, registry, row.count, en, zh)
                view = store_alerts.get_alert(conn, row.id)
                assert view is not None
                out.notifications += dispatcher.opened(conn, view, payload)
                log.info(
                    "alert opened",
                    alert_id=row.id,
                    rule_id=rule.id,
                    device_id=device.id,
                    severity=str(rule.severity),
                    value=value,
                    kind=kind,
                )
            else:
                out.repeated += 1
        else:
            cleared = store_alerts.clear(conn, tr.device_num, rule.id, at, tr.value)
            if cleared is None:
                continue
            out.cleared += 1
            store_alerts.record_event(conn, cleared.id, "cleared", value=value)
            payload = alert_payload("resolved", cleared.id, tr, registry, cleared.count, en, zh)
            view = store_alerts.get_alert(conn, cleared.id)
            assert view is not None
            out.notifications += dispatcher.cleared(conn, view, payload)
            log.info("alert cleared", alert_id=cleared.id, rule_id=rule.id, device_id=device.id)
    if out.notifications:
        conn.execute("SELECT pg_notify('firesentry_outbox', '')")
    return out
