"""The retry policy by severity: urgent notifications outlast long outages, others give up."""

from __future__ import annotations

import pytest

from alerts.retry import DEFAULT_POLICIES, Retry, RetryPolicy, Stop, after_failure


def _after(policy: RetryPolicy, attempts: int, age_s: float, *, open_: bool = True) -> Retry | Stop:
    return after_failure(
        policy,
        attempts=attempts,
        age_s=age_s,
        alert_open=open_,
        receiver_max_attempts=8,
        base_s=1.0,
        cap_s=300.0,
    )


@pytest.mark.parametrize("severity", ["critical", "major"])
def test_urgent_notifications_keep_trying_a_minute_apart_through_a_long_outage(
    severity: str,
) -> None:
    """After 500 failed attempts over 10 hours a fire alarm's notification is still retried,
    never more than a minute later; the receiver's max_attempts does not cut it short."""
    policy = DEFAULT_POLICIES[severity]
    d = _after(policy, 500, 10 * 3600)
    assert isinstance(d, Retry) and d.delay_s <= 60


def test_urgent_notifications_stop_at_the_horizon() -> None:
    """24 h after it was queued, a notification still failing is given up, saying so."""
    d = _after(DEFAULT_POLICIES["critical"], 2000, 86_400)
    assert isinstance(d, Stop) and d.state == "given_up" and "24 h" in d.reason


def test_urgent_retries_stop_when_the_alert_is_handled() -> None:
    """An acknowledged or closed alert: someone is on it; its retries are cancelled."""
    d = _after(DEFAULT_POLICIES["major"], 3, 60, open_=False)
    assert isinstance(d, Stop) and d.state == "cancelled"


@pytest.mark.parametrize("severity", ["warning", "info"])
def test_warnings_give_up_after_their_attempts(severity: str) -> None:
    """Warnings and info stop after 8 attempts (and sooner if the receiver says so)."""
    policy = DEFAULT_POLICIES[severity]
    assert isinstance(_after(policy, 7, 100), Retry)
    d = _after(policy, 8, 100)
    assert isinstance(d, Stop) and d.state == "given_up"
    short = after_failure(
        policy, attempts=2, age_s=1, alert_open=True, receiver_max_attempts=2, base_s=1, cap_s=300
    )
    assert isinstance(short, Stop)


def test_backoff_grows_then_is_capped_by_the_policy() -> None:
    """Delays grow exponentially from the base and never exceed the policy's interval."""
    policy = RetryPolicy(None, 3600.0, 5.0)
    delays = [_after(policy, n, 1) for n in range(1, 12)]
    assert all(isinstance(d, Retry) for d in delays)
    assert max(d.delay_s for d in delays if isinstance(d, Retry)) <= 5.0
