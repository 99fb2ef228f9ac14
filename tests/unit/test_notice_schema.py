"""The documented JSON schema of a notification body is the one the engine sends."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from alerts.fire_119 import forward_schema
from alerts.shape import AlertNotice, notice_schema, sample_notice

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "alert-notice.schema.json"


def test_the_committed_schema_is_current() -> None:
    """docs/alert-notice.schema.json equals the schema generated from alerts.shape; regenerate
    it with: python -c "import json; from alerts.shape import notice_schema; print(json.dumps(
    notice_schema(), indent=2, ensure_ascii=False, sort_keys=True))" > docs/alert-notice.schema.json"""
    assert json.loads(SCHEMA.read_text(encoding="utf-8")) == notice_schema()


def test_a_body_round_trips_and_names_every_field() -> None:
    """A body validates back into the model, and the schema requires every alert field that
    receivers rely on (so removing one is a breaking change the schema shows)."""
    body = sample_notice("Wang Fang", "u1", dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    again = AlertNotice.model_validate(body).model_dump(
        mode="json", by_alias=True, exclude={"idempotency_key", "unit_fire_alarms"}
    )
    assert again == body
    alert = notice_schema()["$defs"]["AlertObject"]
    required = set(alert["required"])
    assert {
        "id",
        "rule_id",
        "severity",
        "state",
        "device_id",
        "unit_id",
        "opened_at",
        "at",
    } <= required
    assert set(body["alert"]) == set(alert["properties"])
    assert "idempotency_key" not in body  # the webhook channel adds the row's key
    assert body["version"] == "2" and body["alert"]["message"]["zh-CN"] == "测试消息：Wang Fang"


def test_the_committed_119_forwarding_schema_is_current() -> None:
    """docs/fire-119.schema.json equals the schema of alerts.fire_119.FireForward; regenerate it
    as above with forward_schema() from alerts.fire_119."""
    path = SCHEMA.with_name("fire-119.schema.json")
    assert json.loads(path.read_text(encoding="utf-8")) == forward_schema()
