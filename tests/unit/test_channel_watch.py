"""Channel alerts: when to open, keep and clear them, and who hears of them."""

from __future__ import annotations

import datetime as dt

from alerts.channel_watch import others, plan
from store.channel_alerts import Address, ChannelAlert, Failing

NOW = dt.datetime(2026, 12, 1, 3, 30, tzinfo=dt.UTC)


def _failing(subject: str, minutes: float) -> Failing:
    return Failing(subject, NOW - dt.timedelta(minutes=minutes), 14, "HTTP 503")


def test_opens_after_the_threshold_only() -> None:
    """Failing 3 minutes with a 2-minute threshold opens; failing 1 minute does not yet."""
    p = plan([_failing("sms", 3), _failing("webhook:hook", 1)], [], NOW, 120)
    assert [f.subject for f in p.open] == ["sms"]
    assert p.update == [] and p.clear == []


def test_an_open_alert_is_kept_current_not_opened_again() -> None:
    """A subject with an open alert is updated (waiting count), never opened twice."""
    a = ChannelAlert(5, "sms", NOW - dt.timedelta(minutes=10), 3)
    p = plan([_failing("sms", 10)], [a], NOW, 120)
    assert p.open == [] and [x.id for x, _ in p.update] == [5] and p.clear == []


def test_clears_when_nothing_fails_any_more() -> None:
    """No failed notification waits on the subject: its alert clears."""
    a = ChannelAlert(5, "webhook:hook", NOW - dt.timedelta(minutes=10), 3)
    assert plan([], [a], NOW, 120).clear == [a]


def test_the_failing_channel_is_never_used_to_tell_of_itself() -> None:
    """A failing SMS provider: the control room hears by webhook and e-mail, not SMS; a
    failing webhook: by the other webhook and SMS."""
    book = [
        Address("webhook", "hook"),
        Address("webhook", "ops"),
        Address("sms", "+8613900000099", 1),
        Address("email", "duty@example.cn", 1),
    ]
    assert [a.receiver for a in others("sms", book)] == ["hook", "ops", "duty@example.cn"]
    assert [a.receiver for a in others("webhook:hook", book)] == [
        "ops",
        "+8613900000099",
        "duty@example.cn",
    ]
