"""Load and validate a rule file; errors name the file, the rule id, the field and the reason."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rules.model import RuleFile

DEFAULT_RULES = "default_rules.yaml"


class RuleFileError(Exception):
    """A rule file that cannot be used."""


def _rule_id(data: Any, loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        try:
            return str(data["rules"][loc[1]].get("id", f"#{loc[1] + 1}"))
        except (KeyError, IndexError, TypeError, AttributeError):
            return f"#{loc[1] + 1}"
    return "-"


def parse_rules(text: str, source: str) -> RuleFile:
    """Parse rule-file text; raise RuleFileError with file, rule id, field and reason."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{source}: not valid YAML: {exc}") from None
    try:
        return RuleFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            field = ".".join(str(p) for p in loc[2:]) or "(rule)"
            lines.append(f"  rule {_rule_id(data, loc)}: {field}: {e['msg']}")
        raise RuleFileError(f"{source}: invalid rule file:\n" + "\n".join(lines)) from None


def load_rules(path: Path | None = None) -> RuleFile:
    """Load the rule file at `path`, or the shipped default rules."""
    if path is None:
        text = resources.files("rules").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
        return parse_rules(text, f"(default) {DEFAULT_RULES}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read rule file: {exc.strerror}") from None
    return parse_rules(text, str(path))
