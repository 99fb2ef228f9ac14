"""How a channel says whether a failed delivery is worth retrying."""

from __future__ import annotations


class DeliveryError(Exception):
    """A notification could not be delivered."""


class RetryableError(DeliveryError):
    """A passing failure (5xx, timeout, connection refused): try again later."""


class PermanentError(DeliveryError):
    """A failure that retrying cannot fix (4xx, unknown receiver): give up now."""
