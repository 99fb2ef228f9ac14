"""The risk model as read from its YAML file: factors, category weights and grade thresholds."""

from __future__ import annotations

import fnmatch
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_MODEL = "risk_model.yaml"


class Grade(StrEnum):
    """The four colours, from the lowest risk to the highest."""

    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"


GRADE_ORDER = (Grade.BLUE, Grade.YELLOW, Grade.ORANGE, Grade.RED)
GRADE_ZH = {Grade.BLUE: "蓝", Grade.YELLOW: "黄", Grade.ORANGE: "橙", Grade.RED: "红"}


class RiskModelError(Exception):
    """A risk model file that cannot be used; the message names the file, the field and why."""


class ReasonText(BaseModel):
    """How a factor explains itself; placeholders {n} (count), {h} (hours), {days} (window)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    en: str
    en_one: str | None = Field(default=None, description="English when the count is exactly 1")
    zh_cn: str = Field(alias="zh-CN")

    def english(self, n: int) -> str:
        """The English template for a count of n."""
        return self.en_one if n == 1 and self.en_one is not None else self.en


class Factor(BaseModel):
    """One input of the grade: a measure of the unit's alerts of some rules, and its weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    rules: tuple[str, ...] = Field(min_length=1, description="rule ids; * and ? match")
    verification: Literal["confirmed_fire", "false_alarm", "unverified"] | None = Field(
        default=None, description="fire alarms only: count those closed (or not) as this"
    )
    measure: Literal["count", "hours", "open_now"]
    weight: float = Field(gt=0)
    max_points: float = Field(gt=0)
    reason: ReasonText

    def matches(self, rule_id: str) -> bool:
        """Whether an alert of this rule counts towards the factor."""
        return any(fnmatch.fnmatchcase(rule_id, pattern) for pattern in self.rules)


class RiskModel(BaseModel):
    """The whole model: the window, the factors, category weights and grade thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, max_length=40)
    window_days: int = Field(ge=1, le=366)
    factors: tuple[Factor, ...] = Field(min_length=1)
    category_weights: dict[str, float] = Field(default_factory=dict)
    grades: dict[Grade, float]

    @model_validator(mode="after")
    def _consistent(self) -> RiskModel:
        ids = [f.id for f in self.factors]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"factor ids must be unique: {dupes} appear twice")
        missing = [g.value for g in GRADE_ORDER if g not in self.grades]
        if missing:
            raise ValueError(f"grades must give a threshold for every colour; missing {missing}")
        if self.grades[Grade.BLUE] != 0:
            raise ValueError("grades.blue must be 0: every unit has a grade")
        steps = [self.grades[g] for g in GRADE_ORDER]
        if steps != sorted(steps) or len(set(steps)) != len(steps):
            raise ValueError(
                f"grades must rise from blue to red (got blue {steps[0]}, yellow {steps[1]}, "
                f"orange {steps[2]}, red {steps[3]})"
            )
        bad = {k: v for k, v in self.category_weights.items() if v <= 0}
        if bad:
            raise ValueError(f"category_weights must be above 0: {bad}")
        return self

    def category_weight(self, category: str) -> float:
        """The multiplier of a unit category (1.0 when the model does not list it)."""
        return self.category_weights.get(category, 1.0)


def parse_model(text: str, source: str) -> RiskModel:
    """Parse risk-model text; raise RiskModelError naming the file, the field and the reason."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RiskModelError(f"{source}: not valid YAML: {exc}") from None
    try:
        return RiskModel.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = list(e["loc"])
            if len(loc) >= 2 and loc[0] == "factors" and isinstance(loc[1], int):
                try:
                    loc[1] = data["factors"][loc[1]]["id"]
                except (KeyError, IndexError, TypeError):
                    loc[1] = f"#{loc[1] + 1}"
            lines.append(f"  {'.'.join(str(p) for p in loc) or '(model)'}: {e['msg']}")
        raise RiskModelError(f"{source}: invalid risk model:\n" + "\n".join(lines)) from None


def load_model(path: Path | None = None) -> RiskModel:
    """Load the risk model at `path`, or the shipped default."""
    if path is None:
        text = resources.files("supervision").joinpath(DEFAULT_MODEL).read_text(encoding="utf-8")
        return parse_model(text, f"(default) {DEFAULT_MODEL}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RiskModelError(f"{path}: cannot read the risk model: {exc.strerror}") from None
    return parse_model(text, str(path))
