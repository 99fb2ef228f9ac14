"""Rule definitions as read from the YAML rule file."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.catalog import EVENT_KINDS_BY_TYPE, METRIC_BY_NAME, DeviceType, EventKind


class Severity(StrEnum):
    """How bad an alert is; routing maps it to parties."""

    CRITICAL = "critical"
    MAJOR = "major"
    WARNING = "warning"
    INFO = "info"


class AttributeThreshold(BaseModel):
    """A threshold read from a device attribute (times factor), with a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    default: float
    factor: float = 1.0


Threshold = float | AttributeThreshold


class Messages(BaseModel):
    """Message templates; placeholders: {device}, {unit}, {metric}, {value}, {threshold},
    {location} (the device's place in the unit), {address} (the unit's), {point} (the alarming
    detector: the panel's text, or its loop and point; else the device's location)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    en: str
    zh_cn: str = Field(alias="zh-CN")


class Rule(BaseModel):
    """One rule: a condition on a metric (or an event kind, or silence) of one device type."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    device_type: DeviceType | None = Field(
        default=None, description="required except for deadman rules (None: every type)"
    )
    kind: Literal["above", "below", "outside", "event", "rate", "deadman"]
    metric: str | None = None
    threshold: Threshold | None = None
    low: Threshold | None = None
    high: Threshold | None = None
    clear: Threshold | None = Field(
        default=None, description="hysteresis: the level at which an open alert clears"
    )
    for_s: float = Field(
        default=0.0, ge=0, alias="for", description="the condition must hold this long to open"
    )
    per: Literal["second", "minute"] = "minute"
    window_s: float = Field(default=60.0, gt=0, description="rate: look back this far")
    direction: Literal["falling", "rising", "either"] = "either"
    event: EventKind | None = None
    clear_event: EventKind | None = EventKind.RESET
    severity: Severity
    name: Messages | None = Field(
        default=None, description="what operators call the rule, e.g. 火警 / Fire alarm"
    )
    message: Messages
    resolved: Messages | None = Field(
        default=None,
        description="the text when the condition clears ({value}: the reading that cleared "
        "it); without it, a generic 'back to normal' text",
    )
    rearm_s: float | None = Field(
        default=None,
        gt=0,
        alias="rearm",
        description="after an operator resolves or closes the alert while the condition still "
        "holds, open it again if it still holds this many seconds later (None: only after it "
        "clears and breaches again); not for event rules, whose every event is seen",
    )

    @property
    def for_ms(self) -> int:
        """The duration in milliseconds."""
        return int(self.for_s * 1000)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.kind == "deadman":
            if self.metric is not None or self.event is not None:
                raise ValueError("a deadman rule takes no metric or event")
            if self.threshold is None:
                raise ValueError("a deadman rule needs 'threshold' (seconds of silence)")
            return self
        if self.device_type is None:
            raise ValueError(f"a {self.kind} rule needs 'device_type'")
        if self.kind == "event":
            if self.rearm_s is not None:
                raise ValueError(
                    "an event rule takes no 'rearm': every event is seen, a later one after "
                    "a close opens a new alert"
                )
            if self.event is None:
                raise ValueError("an event rule needs 'event' (an event kind)")
            if self.metric is not None:
                raise ValueError("an event rule takes no 'metric'")
            allowed = EVENT_KINDS_BY_TYPE[self.device_type]
            for k in (self.event, self.clear_event):
                if k is not None and k not in allowed:
                    raise ValueError(f"event {k} is not reported by {self.device_type}")
            return self
        if self.metric is None:
            raise ValueError(f"a {self.kind} rule needs 'metric'")
        spec = METRIC_BY_NAME.get(self.metric)
        if spec is None:
            raise ValueError(f"unknown metric {self.metric!r}")
        if self.device_type not in spec.device_types:
            raise ValueError(f"metric {self.metric} is not reported by {self.device_type}")
        if self.kind == "outside":
            if self.low is None or self.high is None:
                raise ValueError("an outside rule needs 'low' and 'high'")
            if self.threshold is not None or self.clear is not None:
                raise ValueError("an outside rule takes low/high, not threshold/clear")
        elif self.threshold is None:
            raise ValueError(f"a {self.kind} rule needs 'threshold'")
        if self.kind == "rate" and self.clear is not None:
            raise ValueError("a rate rule clears when the rate falls back; it takes no 'clear'")
        return self

    def applies_to(self, device_type: DeviceType) -> bool:
        """Tell whether devices of this type are checked by the rule."""
        return self.device_type is None or self.device_type == device_type

    def shape(self) -> tuple[str, str | None, str | None, str | None]:
        """What identifies the rule's state: kind, metric or event, device type."""
        return (
            self.kind,
            self.metric,
            str(self.event) if self.event else None,
            str(self.device_type) if self.device_type else None,
        )


class RuleFile(BaseModel):
    """The whole rule file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    rules: list[Rule]

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleFile:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} appears twice")
            seen.add(r.id)
        return self
