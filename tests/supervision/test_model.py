"""The risk model file: the shipped one loads; a broken one names its field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from firesentry.config import ConfigError, load_settings
from supervision.model import RiskModelError, load_model, parse_model

GOOD = """
version: t
window_days: 7
factors:
  - id: false_alarms
    rules: [fire_alarm]
    verification: false_alarm
    measure: count
    weight: 4
    max_points: 40
    reason: {en: "{n} false alarms", zh-CN: "误报{n}次"}
grades: {blue: 0, yellow: 10, orange: 25, red: 60}
"""


def test_shipped_model_loads() -> None:
    """The shipped model is valid and covers the inputs the grade is documented to weigh."""
    m = load_model()
    ids = {f.id for f in m.factors}
    assert {"confirmed_fires", "false_alarms", "open_faults", "offline_hours"} <= ids
    assert m.category_weight("hospital") > m.category_weight("small_venue") == 1.0


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("weight: 4", "weight: -1"), "factors.false_alarms.weight"),
        (("measure: count", "measure: sum"), "factors.false_alarms.measure"),
        (("orange: 25", "orange: 5"), "grades must rise from blue to red"),
        (("red: 60", "purple: 60"), "grades.purple"),
        (("blue: 0", "blue: 1"), "grades.blue must be 0"),
        (("window_days: 7", "window_days: 0"), "window_days"),
        (("    weight: 4", "    wieght: 4\n    weight: 4"), "factors.false_alarms.wieght"),
    ],
)
def test_broken_model_names_the_field(change: tuple[str, str], says: str) -> None:
    """Each mistake is reported with the file and the field it is in."""
    with pytest.raises(RiskModelError) as err:
        parse_model(GOOD.replace(*change), "my-model.yaml")
    assert "my-model.yaml" in str(err.value) and says in str(err.value)


def test_duplicate_factor_ids_are_refused() -> None:
    """Two factors with one id would make reasons ambiguous."""
    doubled = GOOD.replace("grades:", GOOD.split("factors:\n")[1].split("grades:")[0] + "grades:")
    with pytest.raises(RiskModelError, match="unique"):
        parse_model(doubled, "m.yaml")


def test_config_fails_at_start_on_a_broken_model(tmp_path: Path) -> None:
    """A configured model that does not validate stops the start, naming supervision.risk_model."""
    bad = tmp_path / "risk.yaml"
    bad.write_text(GOOD.replace("orange: 25", "orange: 5"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"supervision:\n  risk_model: {bad}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "supervision.risk_model" in str(err.value)
    assert "grades must rise" in str(err.value)


def test_config_missing_model_file(tmp_path: Path) -> None:
    """A model path that does not exist is a clear error at start."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"supervision:\n  risk_model: {tmp_path / 'nope.yaml'}\n")
    with pytest.raises(ConfigError, match="cannot read the risk model"):
        load_settings(cfg)
