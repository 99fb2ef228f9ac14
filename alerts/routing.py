"""The routing file: which parties hear of an alert, on which channels, and when it escalates."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.catalog import DeviceType
from rules.model import Severity

Role = Literal[
    "fire_safety_manager", "property_manager", "grid_worker", "fire_supervisor", "control_room"
]
PersonChannel = Literal["sms", "email"]
DEFAULT_ROUTING = "default_routing.yaml"


class RoutingError(Exception):
    """A routing file that cannot be used; the message names the file, field and reason."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Model):
    """Who is told, on which channels, this long after the alert opened (if still unacknowledged)."""

    after_min: float = Field(default=0, ge=0)
    roles: list[Role] = Field(default_factory=list)
    channels: list[PersonChannel] = Field(default_factory=lambda: list[PersonChannel](["sms"]))
    robots: list[str] = Field(default_factory=list, description="names under notify.robots")


class Repeat(_Model):
    """Reminders to everyone told so far, until acknowledged, at most `max` times."""

    every_min: float = Field(gt=0)
    max: int = Field(ge=1, le=100)


class Match(_Model):
    """Which alerts a route takes; an empty match takes every alert."""

    severity: list[Severity] | None = None
    device_type: list[DeviceType] | None = None
    rule: list[str] | None = None


class Route(_Model):
    """Tiers of parties for the alerts that match."""

    name: str
    match: Match = Match()
    tiers: list[Tier] = Field(min_length=1)
    repeat: Repeat | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Route:
        afters = [t.after_min for t in self.tiers]
        if afters != sorted(afters) or afters[0] != 0:
            raise ValueError("tiers must start at after_min 0 and be in increasing order")
        return self


class RateLimit(_Model):
    """At most `max` messages per recipient per window on one channel; the rest are summarised."""

    max: int = Field(ge=1)
    window_min: float = Field(gt=0)


class RoutingFile(_Model):
    """The whole routing file."""

    version: Literal[1] = 1
    timezone: str = "Asia/Shanghai"
    group_wait_s: float = Field(default=3.0, ge=0, le=600)
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    routes: list[Route] = Field(min_length=1)

    def route_for(self, severity: str, device_type: str, rule_id: str) -> Route | None:
        """The first route whose match takes this alert."""
        for r in self.routes:
            m = r.match
            if m.severity is not None and severity not in m.severity:
                continue
            if m.device_type is not None and device_type not in m.device_type:
                continue
            if m.rule is not None and rule_id not in m.rule:
                continue
            return r
        return None

    def route_named(self, name: str | None) -> Route | None:
        """The route of this name (for escalating an alert routed earlier)."""
        return next((r for r in self.routes if r.name == name), None)

    def robots(self) -> set[str]:
        """Every robot name the routes use."""
        return {name for r in self.routes for t in r.tiers for name in t.robots}


def load_routing(path: Path | None = None) -> RoutingFile:
    """Load the routing file at `path`, or the shipped default."""
    if path is None:
        source = f"(default) {DEFAULT_ROUTING}"
        text = resources.files("alerts").joinpath(DEFAULT_ROUTING).read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RoutingError(f"{path}: cannot read routing file: {exc.strerror}") from None
    try:
        return RoutingFile.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise RoutingError(f"{source}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise RoutingError(f"{source}: invalid routing file:\n" + "\n".join(lines)) from None
