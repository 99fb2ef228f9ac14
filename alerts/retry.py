"""How long a notification that keeps failing is tried: by what is at stake (its severity).

A notification of a critical or major alert is retried, with a backoff capped at a minute, for
as long as its alert is open and not acknowledged, up to a horizon (default 24 h): a receiver
that is down for an hour still gets every fire alarm. Warnings and info give up after a
number of attempts. Permanent refusals (4xx other than 408/429) stop at once elsewhere.
Plain values in, a decision out: no clock, no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to stop retrying: after max_attempts, or once horizon_s has passed since the
    notification was queued (None: that limit does not apply); backoff capped at max_interval_s."""

    max_attempts: int | None = 8
    horizon_s: float | None = None
    max_interval_s: float = 300.0
    # With a horizon: stop once the alert is closed or acknowledged (someone is on it).
    while_open: bool = False


DEFAULT_POLICIES: dict[str, RetryPolicy] = {
    "critical": RetryPolicy(None, 86_400.0, 60.0, while_open=True),
    "major": RetryPolicy(None, 86_400.0, 60.0, while_open=True),
    "warning": RetryPolicy(8, None, 300.0),
    "info": RetryPolicy(8, None, 300.0),
}


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again in delay_s."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop trying: given_up (out of attempts or time) or cancelled (the alert was handled)."""

    state: str
    reason: str


def backoff_s(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter for the n-th failed attempt."""
    return float(random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, attempt - 1)))


def after_failure(
    policy: RetryPolicy,
    *,
    attempts: int,
    age_s: float,
    alert_open: bool,
    receiver_max_attempts: int | None,
    base_s: float,
    cap_s: float,
) -> Retry | Stop:
    """What to do after a notification's attempt number `attempts` failed, `age_s` seconds
    after it was queued. A receiver's own max_attempts bounds policies without a horizon."""
    if policy.horizon_s is not None:
        if policy.while_open and not alert_open:
            return Stop("cancelled", "its alert was acknowledged or closed; retries stopped")
        if age_s >= policy.horizon_s:
            return Stop("given_up", f"still failing after {policy.horizon_s / 3600:g} h")
    else:
        limits = [x for x in (policy.max_attempts, receiver_max_attempts) if x is not None]
        if limits and attempts >= min(limits):
            return Stop("given_up", f"out of attempts ({attempts})")
    return Retry(backoff_s(attempts, base_s, min(cap_s, policy.max_interval_s)))
