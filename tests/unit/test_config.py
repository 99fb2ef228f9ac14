"""Configuration: defaults, environment overrides and readable errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from firesentry.app import resolve_endpoints
from firesentry.config import (
    ConfigError,
    EmailConfig,
    MqttTlsConfig,
    Settings,
    load_settings,
    transport_warnings,
)

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


def _refused(tmp_path: Path, text: str) -> str:
    """The message of the ConfigError that loading this YAML raises."""
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    return str(exc.value)


def test_mqtt_tls_missing_file_names_field_and_variable(tmp_path: Path) -> None:
    """A CA file that does not exist is refused with the field, the path and the variable."""
    text = _refused(tmp_path, "mqtt:\n  tls:\n    enabled: true\n    ca_file: /nope/ca.crt\n")
    assert "mqtt.tls.ca_file (got '/nope/ca.crt'): Value error, file /nope/ca.crt does not" in text
    assert "the CA certificate (PEM) that signed the broker's certificate" in text
    assert "FIRESENTRY_MQTT__TLS__CA_FILE" in text


def test_mqtt_tls_files_without_enabled_or_cert_are_refused(tmp_path: Path) -> None:
    """TLS files with TLS off, or a client key without its certificate, are named as errors."""
    ca = tmp_path / "ca.crt"
    ca.write_text("pem")
    text = _refused(tmp_path, f"mqtt:\n  tls:\n    ca_file: {ca}\n")
    assert "mqtt.tls.ca_file is set but mqtt.tls.enabled is false" in text
    text = _refused(tmp_path, f"mqtt:\n  tls:\n    enabled: true\n    key_file: {ca}\n")
    assert "mqtt.tls.key_file needs mqtt.tls.cert_file" in text


def test_mqtt_tls_checks_the_host_name_by_default(tmp_path: Path) -> None:
    """TLS to the broker is off by default and, once on, verifies the broker's host name."""
    assert Settings().mqtt.tls.enabled is False
    ca = tmp_path / "ca.crt"
    ca.write_text("pem")
    tls = MqttTlsConfig(enabled=True, ca_file=ca)
    assert tls.check_hostname is True


def test_own_broker_certificate_needs_cert_and_key(tmp_path: Path) -> None:
    """embedded.tls.cert_file without key_file, or a missing one, is refused naming the fix."""
    cert = tmp_path / "broker.crt"
    cert.write_text("pem")
    text = _refused(tmp_path, f"embedded:\n  tls:\n    cert_file: {cert}\n")
    assert "embedded.tls.cert_file and embedded.tls.key_file go together" in text
    text = _refused(tmp_path, f"embedded:\n  tls:\n    cert_file: {cert}\n    key_file: /no.key\n")
    assert "embedded.tls.key_file (got '/no.key'): Value error, file /no.key does not exist" in text


def test_bad_sslmode_lists_the_allowed_ones(tmp_path: Path) -> None:
    """An unknown database.sslmode is refused with libpq's six modes."""
    text = _refused(tmp_path, "database:\n  sslmode: verify\n")
    assert (
        "database.sslmode (got 'verify'): Input should be 'disable', 'allow', 'prefer', "
        "'require', 'verify-ca' or 'verify-full'; override with FIRESENTRY_DATABASE__SSLMODE"
    ) in text
    assert Settings().database.sslmode == "prefer"


def test_sslrootcert_must_exist_and_be_used(tmp_path: Path) -> None:
    """sslrootcert must name a file and goes with a mode that checks the certificate."""
    text = _refused(tmp_path, "database:\n  sslmode: verify-full\n  sslrootcert: /no/root.crt\n")
    assert "database.sslrootcert (got '/no/root.crt'): Value error, file /no/root.crt" in text
    root = tmp_path / "root.crt"
    root.write_text("pem")
    text = _refused(tmp_path, f"database:\n  sslrootcert: {root}\n")
    assert "database.sslmode is prefer, which never checks the server's certificate" in text


def test_sslmode_goes_into_every_dsn(tmp_path: Path) -> None:
    """database.sslmode and sslrootcert reach the DSN of the database and of the cluster."""
    root = tmp_path / "root.crt"
    root.write_text("pem")
    sections: dict[str, Any] = {
        "embedded": {"enabled": False},
        "database": {"host": "db.internal", "sslmode": "verify-full", "sslrootcert": str(root)},
    }
    ep = resolve_endpoints(Settings(**sections))
    for dsn in (ep.dsn(), ep.dsn("postgres")):
        params = psycopg.conninfo.conninfo_to_dict(dsn)
        assert params["sslmode"] == "verify-full" and params["sslrootcert"] == str(root)


@pytest.mark.parametrize(
    ("section", "why"),
    [
        (
            "robots:\n    cr:\n      kind: wecom\n      url: https://qyapi.weixin.qq.com/"
            "cgi-bin/webhook/send?key=693a91f6",
            "query parameter key=",
        ),
        (
            "robots:\n    cr:\n      kind: dingtalk\n      url: https://oapi.dingtalk.com/"
            "robot/send?access_token=abc",
            "query parameter access_token=",
        ),
        (
            "robots:\n    cr:\n      kind: feishu\n      url: https://open.feishu.cn/open-apis/"
            "bot/v2/hook/0b1c2d3e",
            "a robot token in the path",
        ),
        ("webhooks:\n    cr:\n      url: https://ops:hunter2@ops.example.com/hook", "before @"),
        (
            "sms:\n    cr:\n      kind: generic\n      url: https://sms.example.com/send?token=t",
            "query parameter token=",
        ),
        ("webhooks:\n    cr:\n      url: https://ops.example.com/hook?secret=s", "secret="),
    ],
)
def test_secret_in_url_is_refused(tmp_path: Path, section: str, why: str) -> None:
    """A URL carrying a key, token or password is refused with the variable for the whole URL."""
    text = _refused(tmp_path, f"notify:\n  {section}\n")
    kind = section.split(":")[0]
    assert f"notify.{kind}.cr.url: the URL carries a secret (" in text and why in text
    assert f"set the whole URL in FIRESENTRY_NOTIFY__{kind.upper()}__CR__URL instead" in text


def test_secret_url_from_the_environment_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same robot URL is fine in the environment, where secrets belong."""
    p = tmp_path / "c.yaml"
    p.write_text("notify:\n  robots:\n    cr:\n      kind: wecom\n      url: https://x.invalid/\n")
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6"
    monkeypatch.setenv("FIRESENTRY_NOTIFY__ROBOTS__CR__URL", url)
    assert str(load_settings(p).notify.robots["cr"].url) == url


def test_a_broken_119_receiver_fails_at_start_with_the_field(tmp_path: Path) -> None:
    """A 119 receiver without a usable URL, or with a deadline out of range, stops the start
    and names the field, instead of a confirmed fire going nowhere."""
    text = _refused(tmp_path, "notify:\n  fire_119:\n    url: 119-centre\n")
    assert "notify.fire_119.url (got '119-centre')" in text
    assert "FIRESENTRY_NOTIFY__FIRE_119__URL" in text
    text = _refused(tmp_path, "notify:\n  fire_119:\n    centre: x\n")
    assert "notify.fire_119.url: Field required" in text
    text = _refused(tmp_path, "notify:\n  verify_within_s: 0\n")
    assert "notify.verify_within_s (got 0)" in text


def test_a_tile_source_needs_a_template_and_keeps_its_key_out_of_the_file(
    tmp_path: Path,
) -> None:
    """api.map_tiles without {z}/{x}/{y} is refused naming what is missing; a URL with a key
    belongs in the environment."""
    text = _refused(tmp_path, "api:\n  map_tiles:\n    url: https://tiles.example.cn/t.png\n")
    assert "api.map_tiles.url" in text and "needs {z}, {x}, {y}" in text
    text = _refused(
        tmp_path, "api:\n  map_tiles:\n    url: https://t.example.cn/{z}/{x}/{y}.png?key=abc\n"
    )
    assert "FIRESENTRY_API__MAP_TILES__URL" in text


def test_starttls_is_on_by_default() -> None:
    """notify.email uses STARTTLS unless told otherwise, and implicit-TLS port 465 is refused."""
    assert EmailConfig(host="smtp.example.com", sender="a@example.com").starttls is True
    with pytest.raises(ValueError, match="port 465 is SMTP over implicit TLS"):
        EmailConfig(host="smtp.example.com", port=465, sender="a@example.com")


def test_plain_receivers_are_warned_by_name() -> None:
    """Every http:// receiver and a plain-text SMTP get a warning naming them; https:// none."""
    sections: dict[str, Any] = {
        "notify": {
            "webhooks": {
                "local": {"url": "http://127.0.0.1:9000/hook"},
                "safe": {"url": "https://ops.example.com/hook"},
            },
            "robots": {"cr": {"kind": "wecom", "url": "http://robot.example.com/send?key=k1"}},
            "sms": {"gw": {"kind": "generic", "url": "http://sms.example.com/send"}},
            "email": {"host": "mail.example.com", "sender": "a@example.com", "starttls": False},
            "fire_119": {"url": "http://119.example.gov.cn/in"},
        }
    }
    warned = {w.receiver: w for w in transport_warnings(Settings(**sections))}
    assert set(warned) == {
        "notify.webhooks.local",
        "notify.robots.cr",
        "notify.sms.gw",
        "notify.email",
        "notify.fire_119",
    }
    assert warned["notify.webhooks.local"].loopback is True
    assert warned["notify.robots.cr"].loopback is False
    assert warned["notify.robots.cr"].url == "http://robot.example.com/send"  # no key shown
    assert "starttls: false" in warned["notify.email"].problem


def test_external_links_without_tls_are_warned() -> None:
    """An external broker without mqtt.tls and a database below verify-full are warned."""
    sections: dict[str, Any] = {
        "embedded": {"enabled": False},
        "mqtt": {"host": "broker.example.com"},
        "database": {"host": "db.example.com", "sslmode": "require"},
    }
    warned = {w.receiver: w.problem for w in transport_warnings(Settings(**sections))}
    assert "mqtt.tls.enabled is false" in warned["mqtt"]
    assert "not checked" in warned["database"]
    assert transport_warnings(Settings()) == []  # embedded: loopback only


def test_a_pdf_font_the_writer_cannot_embed_stops_the_start(tmp_path: Path) -> None:
    """api.pdf_font that is missing, or is no TrueType font, is refused with the field and the
    package that gives one."""
    text = _refused(tmp_path, "api:\n  pdf_font: /nope/font.ttc\n")
    assert "api.pdf_font" in text and "/nope/font.ttc is not a file" in text
    fake = tmp_path / "font.ttf"
    fake.write_bytes(b"this is no font at all" * 10)
    text = _refused(tmp_path, f"api:\n  pdf_font: {fake}\n")
    assert "api.pdf_font" in text and "fonts-wqy-microhei" in text


def test_a_broken_checklist_or_hazard_policy_stops_the_start_naming_the_field(
    tmp_path: Path,
) -> None:
    """A checklist item of an unknown hazard category, an item listed twice, a policy without
    deadlines: each refused at start with the setting, the file and the field."""
    bad = tmp_path / "checklist.yaml"
    bad.write_text(
        'version: "x"\nitems:\n  - {id: exits, category: doors, severity: major,'
        " zh-CN: 出口, en: exits}\n",
        encoding="utf-8",
    )
    text = _refused(tmp_path, f"supervision:\n  inspection_checklist: {bad}\n")
    assert "supervision.inspection_checklist" in text and "items.0.category" in text
    bad.write_text(
        'version: "x"\nitems:\n'
        + "  - {id: exits, category: blocked_exit, severity: major, zh-CN: 出口, en: exits}\n" * 2,
        encoding="utf-8",
    )
    text = _refused(tmp_path, f"supervision:\n  inspection_checklist: {bad}\n")
    assert "item exits is listed twice" in text
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: "x"\nnotify_roles: []\n', encoding="utf-8")
    text = _refused(tmp_path, f"supervision:\n  hazard_policy: {policy}\n")
    assert "supervision.hazard_policy" in text and "deadline_days" in text
