"""Configuration: defaults, environment overrides and readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from firesentry.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_committed_config_loads_with_documented_defaults() -> None:
    """The committed config.yaml is valid and uses the embedded services."""
    s = load_settings(ROOT / "config.yaml")
    assert s.embedded.enabled is True
    assert s.mqtt.topic_prefix == "fs/v1"
    assert s.ingest.batch_max < s.mqtt.receive_maximum


def test_environment_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """FIRESENTRY_SECTION__KEY overrides the file, including dict-nested secrets."""
    monkeypatch.setenv("FIRESENTRY_INGEST__BATCH_MAX", "5000")
    monkeypatch.setenv("FIRESENTRY_NOTIFY__WEBHOOKS__OPS__URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("FIRESENTRY_NOTIFY__WEBHOOKS__OPS__SECRET", "s3cret")
    s = load_settings(ROOT / "config.yaml")
    assert s.ingest.batch_max == 5000
    secret = s.notify.webhooks["ops"].secret
    assert secret is not None and secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_bad_value_names_field_value_and_allowed(tmp_path: Path) -> None:
    """A wrong value stops start-up with the field path, the value and what is allowed."""
    p = tmp_path / "c.yaml"
    p.write_text("ingest:\n  batch_max: 0\nlog:\n  level: loud\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    text = str(exc.value)
    assert "ingest.batch_max (got 0): Input should be greater than or equal to 1" in text
    assert "log.level (got 'loud'): Input should be 'debug', 'info', 'warning' or 'error'" in text
    assert "FIRESENTRY_INGEST__BATCH_MAX" in text


def test_unknown_field_is_named(tmp_path: Path) -> None:
    """A misspelt key is reported, not silently ignored."""
    p = tmp_path / "c.yaml"
    p.write_text("ingest:\n  batch_maxx: 10\n")
    with pytest.raises(ConfigError, match=r"ingest\.batch_maxx.*unknown field"):
        load_settings(p)


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    """Secrets in the committed file are refused with the environment variable to use instead."""
    p = tmp_path / "c.yaml"
    p.write_text("database:\n  password: hunter2\n")
    with pytest.raises(ConfigError, match=r"database\.password: set FIRESENTRY_DATABASE__PASSWORD"):
        load_settings(p)


def test_batch_must_fit_the_receive_window(tmp_path: Path) -> None:
    """A batch larger than the MQTT receive window would stall ingest, so it is refused."""
    p = tmp_path / "c.yaml"
    p.write_text("ingest:\n  batch_max: 5000\nmqtt:\n  receive_maximum: 1000\n")
    with pytest.raises(ConfigError, match=r"batch_max \(5000\) must be below"):
        load_settings(p)


def test_missing_file_says_so(tmp_path: Path) -> None:
    """A config path that does not exist is a clear error."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
