"""Wire models of the MQTT contract (v1), decoded with msgspec on the hot path."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Reading(msgspec.Struct, forbid_unknown_fields=True):
    """One timestamped set of metric values."""

    ts: int | str
    metrics: dict[str, float]
    seq: int | None = None


class TelemetryPayload(msgspec.Struct, forbid_unknown_fields=True):
    """A single reading (`ts`, `metrics`) or a store-and-forward batch (`readings`)."""

    ts: int | str | None = None
    seq: int | None = None
    metrics: dict[str, float] | None = None
    readings: list[Reading] | None = None


class EventPayload(msgspec.Struct, forbid_unknown_fields=True):
    """An event such as a fire alarm from a user information transmission device."""

    ts: int | str
    seq: int
    kind: str
    loop: int | None = None
    point: int | None = None
    text: str = ""


class StatusPayload(msgspec.Struct):
    """The retained status message; the device's will message says offline."""

    status: str


TELEMETRY_DECODER = msgspec.json.Decoder(TelemetryPayload)
EVENT_DECODER = msgspec.json.Decoder(EventPayload)
STATUS_DECODER = msgspec.json.Decoder(StatusPayload)

_EPOCH_MS_MIN = 946_684_800_000  # 2000-01-01: smaller numbers are seconds or garbage


class BadTimestamp(ValueError):
    """A timestamp that is neither epoch milliseconds nor RFC 3339."""


def parse_ts_ms(ts: int | str) -> int:
    """Return epoch milliseconds from epoch ms or an RFC 3339 string with an offset."""
    if isinstance(ts, int):
        if ts < _EPOCH_MS_MIN:
            raise BadTimestamp(f"ts {ts} is not epoch milliseconds (seconds?)")
        return ts
    try:
        dt = datetime.fromisoformat(ts)
    except ValueError:
        raise BadTimestamp(f"ts {ts[:40]!r} is not RFC 3339") from None
    if dt.tzinfo is None:
        raise BadTimestamp(f"ts {ts[:40]!r} has no UTC offset")
    return int(dt.timestamp() * 1000)
