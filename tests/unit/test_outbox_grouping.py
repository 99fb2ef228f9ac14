"""The outbox's pure decisions (alerts/grouping.py): grouping claimed rows, rate limits, merging."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from alerts import grouping
from alerts.templates import render
from store.outbox import ClaimedRow

T0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "CST")


QUEUED = dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)


def row(
    id: int,
    group_key: str | None = None,
    *,
    severity: str | None = "warning",
    channel: str = "sms",
    receiver: str = "+8613800000000",
    kind: str = "firing",
    attempts: int = 1,
    locale: str = "en",
) -> ClaimedRow:
    """A claimed row whose payload carries one alert of `severity` (None: no alert object)."""
    alert: dict[str, Any] = {
        "id": 100 + id,
        "rule_id": "fire_alarm",
        "severity": severity,
        "device_id": f"SD-{id:03d}",
        "unit_id": "U-7",
        "unit_name": "Unit 7",
        "at": "2024-05-01T10:00:00+00:00",
        "count": 1,
        "message": {"en": f"Alarm {id}", "zh-CN": f"火警 {id}"},
    }
    payload: dict[str, Any] = {} if severity is None else {"version": "1", "alert": alert}
    return ClaimedRow(
        id,
        100 + id,
        channel,
        receiver,
        f"key-{id}",
        payload,
        attempts,
        group_key,
        kind,
        locale,
        QUEUED + dt.timedelta(seconds=id),
        True,
    )


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], []),
        ([None, None], []),
        (["b", "a", "b"], ["a", "b"]),
        ([None, "", "x"], ["x"]),
    ],
)
def test_group_keys_are_distinct_sorted_and_skip_rows_without_one(
    keys: list[str | None], expected: list[str]
) -> None:
    """The second claim asks for each non-empty group key once, in sorted order."""
    rows = [row(i, k) for i, k in enumerate(keys, 1)]
    assert grouping.group_keys(rows) == expected


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], []),
        (["a", "a", "a"], [[1, 2, 3]]),
        ([None, None], [[1], [2]]),
        (["a", None, "b", "a", ""], [[1, 4], [2], [3], [5]]),
        (["b", "a", "b"], [[1, 3], [2]]),
    ],
)
def test_rows_group_by_key_in_order_of_arrival(
    keys: list[str | None], expected: list[list[int]]
) -> None:
    """Rows sharing a group key form one group; a row without a key is alone; order is kept."""
    rows = [row(i, k) for i, k in enumerate(keys, 1)]
    assert [[m.id for m in g] for g in grouping.group(rows)] == expected


@pytest.mark.parametrize(
    ("severities", "exempt"),
    [
        (["warning"], False),
        (["major", "info"], False),
        (["critical"], True),
        (["warning", "critical"], True),
        ([None], False),
        (["Critical"], False),
    ],
)
def test_a_group_with_a_critical_alert_is_exempt_from_rate_limits(
    severities: list[str | None], exempt: bool
) -> None:
    """Critical alerts are never held; rows without an alert object count as not critical."""
    members = [row(i, "g", severity=s) for i, s in enumerate(severities, 1)]
    assert grouping.exempt_from_rate_limit(members) is exempt


@pytest.mark.parametrize(
    ("sent", "oldest", "max_per_window", "window_s", "expected"),
    [
        (0, None, 3, 600.0, None),
        (2, T0, 3, 600.0, None),
        (3, T0, 3, 600.0, T0 + dt.timedelta(seconds=600)),
        (7, T0, 3, 90.5, T0 + dt.timedelta(seconds=90.5)),
        (1, T0, 1, 60.0, T0 + dt.timedelta(seconds=60)),
        (5, None, 3, 60.0, None),
    ],
)
def test_a_party_at_its_limit_waits_until_the_oldest_message_leaves_the_window(
    sent: int,
    oldest: dt.datetime | None,
    max_per_window: int,
    window_s: float,
    expected: dt.datetime | None,
) -> None:
    """Below the limit a group goes now; at or over it, it waits for oldest sent + window."""
    assert grouping.held_until(sent, oldest, max_per_window, window_s) == expected


@pytest.mark.parametrize(
    ("alerts", "worst"),
    [
        ([{"severity": "info"}], "info"),
        ([{"severity": "warning"}, {"severity": "critical"}, {"severity": "major"}], "critical"),
        ([{}], "info"),
        ([{"severity": "bogus"}, {"severity": "info"}], "info"),
        ([{"severity": "bogus"}], "bogus"),
    ],
)
def test_worst_severity_ranks_critical_first_and_unknown_last(
    alerts: list[dict[str, Any]], worst: str
) -> None:
    """A merged message carries its most severe alert's severity; missing means info."""
    assert grouping.worst_severity(alerts) == worst


@pytest.mark.parametrize(
    ("ids", "attempts", "lead", "merged_attempts"),
    [
        ([5], [1], 5, 1),
        ([9, 4, 7], [1, 3, 2], 4, 3),
        ([2, 3], [4, 1], 2, 4),
    ],
)
def test_a_webhook_group_goes_out_as_its_lowest_ids_own_payload(
    ids: list[int], attempts: list[int], lead: int, merged_attempts: int
) -> None:
    """Webhooks get the lead (lowest id) row's payload unchanged, its ids first, max attempts."""
    members = [
        row(i, "g", channel="webhook", attempts=a) for i, a in zip(ids, attempts, strict=True)
    ]
    out = grouping.merge(members, dt.UTC)
    n = out.notification
    assert out.ids == tuple(sorted(ids))
    assert (n.id, n.alert_id, n.idempotency_key) == (lead, 100 + lead, f"key-{lead}")
    assert n.payload is next(m.payload for m in members if m.id == lead)
    assert n.attempts == merged_attempts
    assert [m.id for m in members] == ids  # the caller's list is not reordered


@pytest.mark.parametrize(
    ("ids", "kind", "severities", "event", "severity"),
    [
        ([3], "firing", ["major"], "firing", "major"),
        ([3], "escalation", ["critical"], "escalation", "critical"),
        ([3], "reminder", ["warning"], "reminder", "warning"),
        ([8, 3], "firing", ["info", "critical"], "group", "critical"),
        ([6, 2, 4], "resolved", ["warning", "major", "info"], "group", "major"),
    ],
)
def test_a_text_group_is_rendered_once_from_its_alerts_in_id_order(
    ids: list[int], kind: str, severities: list[str], event: str, severity: str
) -> None:
    """One row renders as its own kind, several as a group; alerts go in id order, worst wins."""
    members = [row(i, "g", severity=s, kind=kind) for i, s in zip(ids, severities, strict=True)]
    out = grouping.merge(members, SHANGHAI)
    ordered = sorted(members, key=lambda m: m.id)
    alerts = [m.payload["alert"] for m in ordered]
    text = render(event, alerts, "en", "sms", tz=SHANGHAI)
    assert out.ids == tuple(m.id for m in ordered)
    assert out.notification.id == ordered[0].id
    assert out.notification.payload == {
        "title": text.title,
        "text": text.text,
        "locale": "en",
        "severity": severity,
        "alert_ids": [100 + m.id for m in ordered],
    }


@pytest.mark.parametrize("channel", ["sms", "email", "wecom", "dingtalk", "feishu"])
def test_the_lead_rows_locale_and_channel_decide_the_wording(channel: str) -> None:
    """A merged message is rendered in the lead row's locale for the lead row's channel."""
    members = [row(2, "g", channel=channel, locale="zh-CN"), row(5, "g", channel=channel)]
    out = grouping.merge(members, dt.UTC)
    alerts = [m.payload["alert"] for m in members]
    text = render("group", alerts, "zh-CN", channel, tz=dt.UTC)
    assert (out.notification.channel, out.notification.payload["locale"]) == (channel, "zh-CN")
    assert out.notification.payload["text"] == text.text
