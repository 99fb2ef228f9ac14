"""Which channel a person is tried on next, and when the control room hears they are unreachable."""

from __future__ import annotations

import dataclasses

from alerts.failover import HandOver, Settled, Unreachable, decide, next_channel
from store.failover import Stuck

BOTH = frozenset({"sms", "email"})


def stuck(**kw: object) -> Stuck:
    base = Stuck(
        id=2, root=2, alert_id=1, channel="sms", kind="firing",
        payload={"alert": {"severity": "critical", "rule_id": "fire_alarm"}}, locale="zh-CN",
        error="HTTP 503", first_failed_at=None, contact_id=5,
        contact_name="Zhang", role="fire_safety_manager", phone="+8613800000001",
        email="z@example.com", contact_channels=(), tried=frozenset({"sms"}), reached=False,
        unit_id="u1",
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_sms_fails_over_to_email() -> None:
    """Without an order of the contact's own, SMS is followed by e-mail."""
    d = decide(stuck(), BOTH)
    assert isinstance(d, HandOver) and (d.channel, d.address) == ("email", "z@example.com")


def test_email_fails_over_to_sms() -> None:
    """A failing e-mail is followed by SMS when the person has not had it."""
    d = decide(stuck(channel="email", tried=frozenset({"email"})), BOTH)
    assert isinstance(d, HandOver) and d.channel == "sms"


def test_the_contacts_own_channels_bound_the_failover() -> None:
    """A contact who takes SMS only is never mailed."""
    assert next_channel(stuck(contact_channels=("sms",)), BOTH) is None


def test_no_provider_or_no_address_means_no_handover() -> None:
    """E-mail without a server, or a person without an address, is not a way to reach them."""
    assert next_channel(stuck(), frozenset({"sms"})) is None
    assert next_channel(stuck(email=None), BOTH) is None


def test_urgent_with_no_channel_left_is_unreachable() -> None:
    """Every channel tried for a critical or major alert: tell the control room."""
    for severity in ("critical", "major"):
        row = stuck(tried=BOTH, payload={"alert": {"severity": severity, "rule_id": "fire_alarm"}})
        assert isinstance(decide(row, BOTH), Unreachable)


def test_reached_on_another_channel_or_not_urgent_is_settled() -> None:
    """Told already (the route's e-mail went out), a warning, a resolved notice, or one of
    firesentry's own notices (no cascade among control-room contacts): nothing more."""
    assert isinstance(decide(stuck(tried=BOTH, reached=True), BOTH), Settled)
    warning = {"alert": {"severity": "warning", "rule_id": "battery_low"}}
    assert isinstance(decide(stuck(tried=BOTH, payload=warning), BOTH), Settled)
    assert isinstance(decide(stuck(tried=BOTH, kind="resolved"), BOTH), Settled)
    own = {"alert": {"severity": "critical", "rule_id": "party_unreachable"}}
    assert isinstance(decide(stuck(tried=BOTH, payload=own), BOTH), Settled)
