"""Contacts' phone numbers and e-mail addresses, shown only to the roles that contact people.

The control room (operators) and admins phone a unit's fire-safety manager to verify a fire
alarm and see whether a message reached them; analysts count and chart, and need no one's
number. For them a receiver is masked: +86138****0001, w***@example.com.
"""

from __future__ import annotations

import re
from typing import Any

# The shapes contacts' addresses are registered in (devices/records.py validates them so).
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{4,24}$")
_EMAIL = re.compile(r"^([^@\s]+)@([^@\s]+\.[^@\s]+)$")
# Kept of a phone number: the country and network prefix, and the last four digits.
_HEAD, _TAIL = 6, 4


def mask_phone(phone: str) -> str:
    """+8613812340001 → +86138****0001 (short numbers: all but the last two digits hidden)."""
    if len(phone) <= _HEAD + _TAIL:
        return "*" * max(0, len(phone) - 2) + phone[-2:]
    return phone[:_HEAD] + "*" * (len(phone) - _HEAD - _TAIL) + phone[-_TAIL:]


def mask_address(receiver: str) -> str:
    """A receiver with a phone number or e-mail address masked; anything else (a webhook or a
    robot's configured name) as it is."""
    text = receiver.strip()
    if _PHONE.match(text):
        return mask_phone(text)
    m = _EMAIL.match(text)
    if m:
        return f"{m.group(1)[0]}***@{m.group(2)}"
    return receiver


def mask_in(text: str | None, receiver: str) -> str | None:
    """Text (e.g. a provider's error) with every occurrence of the receiver masked."""
    if text is None or not receiver.strip():
        return text
    masked = mask_address(receiver)
    return text if masked == receiver else text.replace(receiver.strip(), masked)


def masked_delivery(receiver: str, last_error: str | None, clear: bool) -> dict[str, Any]:
    """A notification's receiver and last error as a role sees them: in the clear, or masked
    (the error names the receiver too) for roles without contacts:read."""
    if clear:
        return {"receiver": receiver, "last_error": last_error}
    return {"receiver": mask_address(receiver), "last_error": mask_in(last_error, receiver)}
