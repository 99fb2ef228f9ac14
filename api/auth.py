"""Who is calling: bearer tokens, roles and what each role may do, and unit scopes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    """One thing an endpoint needs; roles are sets of them."""

    ALERTS_READ = "alerts:read"
    ALERTS_ACT = "alerts:act"
    UNITS_READ = "units:read"
    TELEMETRY_READ = "telemetry:read"
    TELEMETRY_EXPORT = "telemetry:export"
    STATS_READ = "stats:read"
    METRICS_READ = "metrics:read"
    # Contacts' phone numbers and e-mail addresses in the clear (masked without it).
    CONTACTS_READ = "contacts:read"
    # Hazards: read them; report and follow them (notify, rectify, submit, photos); review a
    # rectification and close the hazard (销案).
    HAZARDS_READ = "hazards:read"
    HAZARDS_ACT = "hazards:act"
    HAZARDS_REVIEW = "hazards:review"


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    # The control room: alerts and what to do about them, units and devices, recent charts,
    # and the numbers it dials to verify a fire alarm with the unit's people.
    "operator": frozenset(
        {
            Permission.ALERTS_READ,
            Permission.ALERTS_ACT,
            Permission.UNITS_READ,
            Permission.TELEMETRY_READ,
            Permission.CONTACTS_READ,
            Permission.HAZARDS_READ,
            Permission.HAZARDS_ACT,
        }
    ),
    # Analysts read: alerts (no actions), time series, exports and statistics; they call no
    # one, so contacts' numbers and addresses reach them masked.
    "analyst": frozenset(
        {
            Permission.ALERTS_READ,
            Permission.TELEMETRY_READ,
            Permission.TELEMETRY_EXPORT,
            Permission.STATS_READ,
            Permission.HAZARDS_READ,
        }
    ),
    "admin": frozenset(Permission),
    # A wall screen: the board and its live stream, nothing to act on and no one's number. Its
    # token stays in the screen's browser for months, within reach of anyone in the room.
    "display": frozenset({Permission.ALERTS_READ}),
    # Grid workers and inspectors in the field: the units they cover (their token's scope),
    # their open alerts, and the hazards they report and follow; the people to call.
    "inspector": frozenset(
        {
            Permission.ALERTS_READ,
            Permission.UNITS_READ,
            Permission.CONTACTS_READ,
            Permission.HAZARDS_READ,
            Permission.HAZARDS_ACT,
        }
    ),
    # Fire supervisors: what inspectors do, and they judge rectifications and close hazards.
    "supervisor": frozenset(
        {
            Permission.ALERTS_READ,
            Permission.UNITS_READ,
            Permission.CONTACTS_READ,
            Permission.STATS_READ,
            Permission.HAZARDS_READ,
            Permission.HAZARDS_ACT,
            Permission.HAZARDS_REVIEW,
        }
    ),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a token: its name (recorded as the actor), role and unit scope."""

    token_id: int
    name: str
    role: str
    # The units the token may see; None: every unit.
    units: tuple[str, ...] | None

    @property
    def permissions(self) -> frozenset[Permission]:
        """What the role may do."""
        return ROLE_PERMISSIONS.get(self.role, frozenset())

    def may(self, permission: Permission) -> bool:
        """Tell whether the role grants the permission."""
        return permission in self.permissions

    def sees_unit(self, unit_id: str) -> bool:
        """Tell whether the unit lies in the token's scope."""
        return self.units is None or unit_id in self.units

    @property
    def scope(self) -> Sequence[str] | None:
        """The unit filter for queries (None: all units)."""
        return self.units


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if well formed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return None
    return token
