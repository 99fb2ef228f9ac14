"""The one typed configuration: `config.yaml`, overridden by `FIRESENTRY_*` environment variables."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from supervision.hazards import HazardPolicyError, load_policy
from supervision.inspections import ChecklistError, load_checklist
from supervision.model import RiskModelError, load_model

ENV_PREFIX = "FIRESENTRY_"
ENV_NESTED = "__"
# Keys whose values are secrets: the committed file must not hold them.
SECRET_KEYS = frozenset(
    {"password", "migrate_password", "secret", "token", "access_key_secret", "auth_token"}
)
# Query parameters that carry a credential (WeCom robots: key=, DingTalk: access_token=): a URL
# with one, or with user:pass@, is a secret and is refused in the file like the keys above.
SECRET_URL_PARAMS = frozenset(
    {"key", "token", "access_token", "secret", "password", "api_key", "apikey", "auth_token"}
)
# Feishu/Lark robots carry their token in the path: /open-apis/bot/v2/hook/<token>.
_SECRET_URL_PATH = re.compile(r"/bot/v\d+/hook/[^/]+")


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the field and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _must_exist(value: Path | None, what: str) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"file {value} does not exist (or is not a file); give the path of {what}")
    return value


class EmbeddedTlsConfig(_Section):
    """The private broker's MQTT-over-TLS listener for devices (README "MQTT over TLS")."""

    enabled: bool = True
    bind: str = Field(
        default="127.0.0.1", description="0.0.0.0: every IPv4 interface, for devices elsewhere"
    )
    port: int = Field(default=0, ge=0, le=65535, description="0: a free port, kept; 8883 usual")
    hosts: list[str] = Field(
        default_factory=list,
        description="names/IPs devices use, added to the generated certificate",
    )
    cert_file: Path | None = Field(default=None, description="your own certificate (PEM chain)")
    key_file: Path | None = Field(default=None, description="its private key (PEM)")
    ca_file: Path | None = Field(
        default=None, description="the CA devices pin for your certificate (none: a public CA)"
    )

    @field_validator("cert_file")
    @classmethod
    def _cert_exists(cls, v: Path | None) -> Path | None:
        return _must_exist(v, "the broker's certificate (PEM, with its chain)")

    @field_validator("key_file")
    @classmethod
    def _key_exists(cls, v: Path | None) -> Path | None:
        return _must_exist(v, "the private key of the broker's certificate (PEM)")

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, v: Path | None) -> Path | None:
        return _must_exist(v, "the CA certificate that issued the broker's certificate")

    @model_validator(mode="after")
    def _own_cert_complete(self) -> EmbeddedTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "embedded.tls.cert_file and embedded.tls.key_file go together: set both to use "
                "your own certificate, or neither to use the generated one"
            )
        if self.ca_file is not None and self.cert_file is None:
            raise ValueError(
                "embedded.tls.ca_file is only for your own certificate (cert_file, key_file); "
                "the generated certificate's CA is .firesentry/tls/ca.crt"
            )
        return self


class EmbeddedConfig(_Section):
    """Private Mosquitto and PostgreSQL started by `firesentry up` under `dir`."""

    enabled: bool = True
    dir: Path = Path(".firesentry")
    mosquitto_bin: str = "mosquitto"
    pg_bin_dir: str | None = Field(
        default=None, description="folder with initdb/pg_ctl; found under /usr/lib/postgresql"
    )
    timescaledb: bool = Field(
        default=False, description="preload the timescaledb extension (must be installed)"
    )
    tls: EmbeddedTlsConfig = EmbeddedTlsConfig()


class MqttTlsConfig(_Section):
    """TLS to the broker: the CA that signed its certificate, a client certificate if it asks."""

    enabled: bool = False
    ca_file: Path | None = Field(default=None, description="PEM CA bundle; none: the system's")
    cert_file: Path | None = Field(default=None, description="client certificate (PEM)")
    key_file: Path | None = Field(default=None, description="its private key (PEM)")
    check_hostname: bool = Field(
        default=True,
        description="the certificate must name mqtt.host (never turn off in production)",
    )

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, v: Path | None) -> Path | None:
        return _must_exist(v, "the CA certificate (PEM) that signed the broker's certificate")

    @field_validator("cert_file")
    @classmethod
    def _cert_exists(cls, v: Path | None) -> Path | None:
        return _must_exist(v, "ingest's client certificate (PEM)")

    @field_validator("key_file")
    @classmethod
    def _key_exists(cls, v: Path | None) -> Path | None:
        return _must_exist(v, "the private key of ingest's client certificate (PEM)")

    @model_validator(mode="after")
    def _consistent(self) -> MqttTlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("mqtt.tls.key_file needs mqtt.tls.cert_file (the client certificate)")
        given = [f for f in ("ca_file", "cert_file", "key_file") if getattr(self, f) is not None]
        if given and not self.enabled:
            raise ValueError(
                f"mqtt.tls.{given[0]} is set but mqtt.tls.enabled is false; set "
                "mqtt.tls.enabled: true (FIRESENTRY_MQTT__TLS__ENABLED=true) or remove it"
            )
        return self


class MqttConfig(_Section):
    """The broker ingest subscribes to (ignored when embedded services are enabled)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = Field(default="firesentry-ingest", min_length=1, max_length=128)
    topic_prefix: str = Field(default="fs/v1", pattern=r"^[^#+]+[^/#+]$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    # The broker holds the session (and queues for it) this long while ingest is away.
    session_expiry_s: int = Field(default=7 * 86400, ge=0)
    receive_maximum: int = Field(default=65535, ge=1, le=65535)
    shared_group: str | None = Field(
        default=None, description="subscribe via $share/<group>/ for several ingest workers"
    )
    tls: MqttTlsConfig = MqttTlsConfig()


class DatabaseConfig(_Section):
    """PostgreSQL (or TimescaleDB) connection; ignored when embedded services are enabled."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str = "firesentry"
    user: str = "firesentry"
    password: SecretStr | None = None
    pool_min: int = Field(default=1, ge=1)
    pool_max: int = Field(default=4, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # Migrations run as the schema owner; the engine and API as `user`, which owns nothing.
    migrate_user: str | None = Field(
        default=None, description="the schema owner migrations log in as (null: user)"
    )
    migrate_password: SecretStr | None = None
    migrate_lock_timeout_s: float = Field(
        default=30.0, gt=0, description="how long a migration waits for another's lock"
    )
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="prefer",
        description="libpq sslmode; verify-full (with sslrootcert) across any network",
    )
    sslrootcert: str | None = Field(
        default=None, description="CA file that signed the server's certificate, or 'system'"
    )

    @field_validator("sslrootcert")
    @classmethod
    def _root_exists(cls, v: str | None) -> str | None:
        if v is not None and v != "system":
            _must_exist(Path(v), "the CA certificate (PEM) that signed the server's certificate")
        return v

    @model_validator(mode="after")
    def _rootcert_is_used(self) -> DatabaseConfig:
        if self.sslrootcert is not None and self.sslmode in ("disable", "allow", "prefer"):
            raise ValueError(
                f"database.sslrootcert is set but database.sslmode is {self.sslmode}, which never "
                "checks the server's certificate; set database.sslmode: verify-full"
            )
        return self


class IngestConfig(_Section):
    """Batching and input limits of the MQTT consumer."""

    batch_max: int = Field(default=2000, ge=1, le=60000)
    batch_wait_ms: int = Field(default=50, ge=1, le=10000)
    max_payload_bytes: int = Field(default=64 * 1024, ge=256)
    max_future_s: int = Field(default=300, ge=0)
    registry_refresh_s: float = Field(default=10.0, gt=0)
    retry_max_s: float = Field(
        default=2.0, gt=0, description="longest wait between two tries while the database fails"
    )


class StorageConfig(_Section):
    """Partitioning and retention of the time series."""

    backend: Literal["auto", "native", "timescale"] = Field(
        default="auto", description="auto: TimescaleDB when the server has it preloaded"
    )
    retention_days: int = Field(default=400, ge=1)
    partitions_ahead_days: int = Field(default=3, ge=1, le=60)


class RulesConfig(_Section):
    """Where the rule file lives (the shipped default when unset) and how often silence is checked."""

    file: Path | None = None
    silence_check_s: float = Field(default=5.0, gt=0, le=3600)


class SupervisionConfig(_Section):
    """The four-colour risk grade of units: its model file and how often units are graded."""

    risk_model: Path | None = Field(
        default=None, description="a risk model YAML file; the shipped supervision/risk_model.yaml"
    )
    grading: bool = Field(
        default=True,
        description="grade units, find hazards in the data and escalate overdue ones on a "
        "schedule in the engine",
    )
    grade_every_s: float = Field(default=300.0, ge=5, le=86_400)
    hazard_policy: Path | None = Field(
        default=None,
        description="the hazard loop's policy YAML file; the shipped supervision/hazard_policy.yaml",
    )

    inspection_checklist: Path | None = Field(
        default=None,
        description="the checklist YAML of inspections at units; the shipped "
        "supervision/inspection_checklist.yaml",
    )

    @field_validator("inspection_checklist")
    @classmethod
    def _checklist_loads(cls, v: Path | None) -> Path | None:
        if v is not None:
            try:
                load_checklist(v)
            except ChecklistError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("hazard_policy")
    @classmethod
    def _policy_loads(cls, v: Path | None) -> Path | None:
        if v is not None:
            try:
                load_policy(v)
            except HazardPolicyError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("risk_model")
    @classmethod
    def _model_loads(cls, v: Path | None) -> Path | None:
        # A broken model fails the start here, naming its field, not at the first grading.
        if v is not None:
            try:
                load_model(v)
            except RiskModelError as exc:
                raise ValueError(str(exc)) from None
        return v


class WebhookReceiver(_Section):
    """A URL that receives alerts as signed JSON POSTs."""

    url: HttpUrl
    secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key; set FIRESENTRY_NOTIFY__WEBHOOKS__<NAME>__SECRET"
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_attempts: int = Field(default=8, ge=1, le=100)
    send_resolved: bool = True


class SmsProviderConfig(_Section):
    """One SMS provider; several are tried in the order they are listed (failover)."""

    kind: Literal["generic", "aliyun", "twilio"]
    url: str | None = Field(default=None, description="generic: gateway URL; twilio: API base")
    token: SecretStr | None = Field(default=None, description="generic: bearer token (env)")
    access_key_id: str | None = None
    access_key_secret: SecretStr | None = Field(default=None, description="aliyun (env)")
    sign_name: str | None = None
    template_code: str | None = None
    template_param: str = "content"
    account_sid: str | None = None
    auth_token: SecretStr | None = Field(default=None, description="twilio (env)")
    from_number: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    receipts: bool = Field(
        default=False,
        description="the provider POSTs delivery receipts to /api/v1/receipts/sms/<name>: "
        "a message is 'delivered' only on its word",
    )
    status_callback: str | None = Field(
        default=None,
        description="twilio: the URL Twilio reaches /api/v1/receipts/sms/<name> at",
    )
    receipt_token: SecretStr | None = Field(
        default=None, description="aliyun: the secret the SmsReport push URL carries as ?token="
    )

    @model_validator(mode="after")
    def _complete(self) -> SmsProviderConfig:
        need = {
            "generic": ["url"],
            "aliyun": ["access_key_id", "access_key_secret", "sign_name", "template_code"],
            "twilio": ["account_sid", "auth_token", "from_number"],
        }[self.kind]
        if self.receipts:
            # What proves a receipt came from the provider (api/receipts.py).
            need = need + {"generic": ["token"], "aliyun": ["receipt_token"],
                           "twilio": ["status_callback"]}[self.kind]  # fmt: skip
        missing = [f for f in need if getattr(self, f) in (None, "")]
        if missing:
            why = " (to take its delivery receipts)" if self.receipts else ""
            raise ValueError(f"a {self.kind} SMS provider needs {', '.join(missing)}{why}")
        return self


class RobotConfig(_Section):
    """A chat group robot (its webhook URL; the secret, if signed, from the environment)."""

    kind: Literal["wecom", "dingtalk", "feishu"]
    url: HttpUrl
    secret: SecretStr | None = None


class EmailConfig(_Section):
    """The SMTP server alerts are mailed through."""

    host: str
    port: int = Field(default=25, ge=1, le=65535)
    sender: str
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = Field(
        default=True, description="false sends the password and alerts in clear (warned at start)"
    )
    ca_file: Path | None = Field(
        default=None, description="CA that signed the server's certificate; none: the system's"
    )
    timeout_s: float = Field(default=20.0, gt=0)

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, v: Path | None) -> Path | None:
        return _must_exist(v, "the CA certificate (PEM) that signed the SMTP server's certificate")

    @model_validator(mode="after")
    def _not_implicit_tls(self) -> EmailConfig:
        if self.port == 465:
            raise ValueError(
                "notify.email.port 465 is SMTP over implicit TLS, which is not supported; use "
                "the submission port 587 with starttls: true"
            )
        return self


class RetryPolicyConfig(_Section):
    """How long a failing notification of one severity is tried (see alerts/retry.py)."""

    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    horizon_min: float | None = Field(
        default=None, gt=0, le=10_080, description="keep trying this long after it was queued"
    )
    max_interval_s: float = Field(default=60.0, gt=0, le=3600)
    while_open: bool = Field(
        default=True, description="with a horizon: stop once the alert is acknowledged or closed"
    )

    @model_validator(mode="after")
    def _bounded(self) -> RetryPolicyConfig:
        if self.max_attempts is None and self.horizon_min is None:
            raise ValueError("a retry policy needs max_attempts or horizon_min (or both)")
        return self


SeverityName = Literal["critical", "major", "warning", "info"]


def _default_retry() -> dict[SeverityName, RetryPolicyConfig]:
    urgent = RetryPolicyConfig(horizon_min=1440, max_interval_s=60)
    patient = RetryPolicyConfig(max_attempts=8, max_interval_s=300)
    return {"critical": urgent, "major": urgent, "warning": patient, "info": patient}


class Fire119Config(_Section):
    """The 119 command centre's receiver: confirmed fires are POSTed to it (GB 50440)."""

    url: HttpUrl
    secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key; set FIRESENTRY_NOTIFY__FIRE_119__SECRET"
    )
    name: str = Field(
        default="119", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the receiver's name"
    )
    centre: str = Field(default="", description="this monitoring centre's name, as 119 reads it")
    timeout_s: float = Field(
        default=2.0, gt=0, le=10, description="one attempt; a slow 119 receiver is tried again"
    )
    forward_unverified: bool = Field(
        default=False,
        description="also forward a fire alarm nobody verified within notify.verify_within_s",
    )


class NotifyConfig(_Section):
    """The outbox worker and its receivers."""

    routing_file: Path | None = Field(
        default=None, description="who is told of what; the shipped default when unset"
    )
    webhooks: dict[str, WebhookReceiver] = Field(default_factory=dict)
    sms: dict[str, SmsProviderConfig] = Field(default_factory=dict)
    robots: dict[str, RobotConfig] = Field(default_factory=dict)
    email: EmailConfig | None = None
    fire_119: Fire119Config | None = Field(
        default=None, description="forward confirmed fires to the 119 command centre"
    )
    verify_within_s: float = Field(
        default=180.0,
        gt=0,
        le=3600,
        description="a fire alarm nobody verified this long after it opened is escalated",
    )
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0)
    retry: dict[SeverityName, RetryPolicyConfig] = Field(
        default_factory=_default_retry,
        description="per severity; critical and major keep trying for 24 h while unhandled",
    )
    dead_after_s: float = Field(
        default=60.0,
        gt=0,
        description="outbox rounds failing this long (not a database outage): the process exits 70",
    )
    channel_alert_after_s: float = Field(
        default=120.0,
        gt=0,
        description="a channel whose notifications keep failing this long opens a channel alert",
    )
    channel_check_s: float = Field(default=10.0, gt=0, le=600)
    failover_after_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="a contact's notification failing this long goes out on their next channel",
    )


class MapTilesConfig(_Section):
    """A tile server for the console's map (a city's own; nothing loads from elsewhere)."""

    url: str = Field(
        pattern=r"^https?://[^\s]+$",
        description="a URL template with {z}, {x} and {y}, e.g. https://tiles.city.gov.cn/{z}/{x}/{y}.png",
    )
    attribution: str = Field(default="", max_length=300)
    max_zoom: int = Field(default=18, ge=1, le=22)

    @field_validator("url")
    @classmethod
    def _template(cls, v: str) -> str:
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in v]
        if missing:
            raise ValueError(f"the URL template needs {', '.join(missing)}")
        return v


class ApiConfig(_Section):
    """The HTTP API and the control-room console, served by `run`, `demo` and `api`."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0: any free port")
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="the console's address as people reach it: units' QR codes open "
        "<public_url>/u/<code>; default http://<host>:<port>",
    )
    map_tiles: MapTilesConfig | None = Field(
        default=None, description="the map's tile server; none: units on a blank ground"
    )
    map_library_dir: Path | None = Field(
        default=Path("/usr/share/javascript/leaflet"),
        description="Leaflet's files (Debian's libjs-leaflet); without them: the plain map",
    )
    pdf_font: Path | None = Field(
        default=None,
        description="a TrueType CJK font embedded in the PDF notices and QR sheets; default "
        "the first installed of WenQuanYi Micro Hei / Zen Hei, AR PL UMing, Droid Sans Fallback",
    )
    pool_max: int = Field(default=8, ge=1, le=100, description="database connections of the API")
    ready_stale_after_s: float = Field(
        default=10.0, gt=0, description="/readyz: an engine whose health is older is down"
    )
    ready_max_lag_s: float = Field(
        default=30.0,
        gt=0,
        description="/readyz: fail when ingest's oldest uncommitted message is older",
    )
    ready_max_outbox_age_s: float = Field(
        default=120.0,
        gt=0,
        description="/readyz: fail when the oldest due notification waited longer",
    )
    export_pool_max: int = Field(
        default=2,
        ge=1,
        le=50,
        description="database connections for CSV exports, apart from pool_max (exports wait "
        "on their clients, so they must never hold the control room's connections)",
    )
    export_per_token: int = Field(
        default=1, ge=1, le=50, description="exports one token may run at once; more: 429"
    )
    export_idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="an export client that reads nothing this long is dropped",
    )
    stream_idle_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="an SSE client that reads nothing this long"
    )
    stream_token_check_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="how often open streams check that their token is neither revoked nor expired",
    )
    auth_fail_limit: int = Field(
        default=20,
        ge=1,
        description="failed authentications per client address in auth_fail_window_s; more: 429",
    )
    auth_fail_window_s: float = Field(default=60.0, gt=0, le=86400)

    @field_validator("pdf_font")
    @classmethod
    def _embeddable(cls, v: Path | None) -> Path | None:
        if v is not None:
            # Imported here: only a config that names a font pays for the PDF writer at start.
            from supervision.unit_code_pdf import check_font

            check_font(v)
        return v


class LogConfig(_Section):
    """Log level and format (json when not on a TTY unless set)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """Everything firesentry reads from config.yaml and FIRESENTRY_* variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED,
        extra="forbid",
        frozen=True,
    )

    embedded: EmbeddedConfig = EmbeddedConfig()
    mqtt: MqttConfig = MqttConfig()
    database: DatabaseConfig = DatabaseConfig()
    ingest: IngestConfig = IngestConfig()
    storage: StorageConfig = StorageConfig()
    rules: RulesConfig = RulesConfig()
    supervision: SupervisionConfig = SupervisionConfig()
    notify: NotifyConfig = NotifyConfig()
    api: ApiConfig = ApiConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _batch_fits_receive_maximum(self) -> Settings:
        if self.ingest.batch_max >= self.mqtt.receive_maximum:
            raise ValueError(
                f"ingest.batch_max ({self.ingest.batch_max}) must be below "
                f"mqtt.receive_maximum ({self.mqtt.receive_maximum}): acks are held until a "
                "batch commits, so a smaller receive maximum would stall ingest"
            )
        if self.database.pool_min > self.database.pool_max:
            raise ValueError("database.pool_min must not exceed database.pool_max")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs (see load_settings); environment wins over it.
        return (env_settings, init_settings)


def _find_secrets(node: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in SECRET_KEYS and value not in (None, ""):
                found.append(sub)
            else:
                found.extend(_find_secrets(value, sub))
    return found


def url_secret(value: str) -> str | None:
    """Say which secret a URL carries (credentials, a key= parameter, a robot token), or None."""
    try:
        parts = urllib.parse.urlsplit(value.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    if "@" in parts.netloc:
        return "credentials before @"
    for name, _ in urllib.parse.parse_qsl(parts.query):
        if name.lower() in SECRET_URL_PARAMS:
            return f"query parameter {name}="
    if _SECRET_URL_PATH.search(parts.path):
        return "a robot token in the path"
    return None


def _find_url_secrets(node: Any, path: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_find_url_secrets(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(node, str):
        why = url_secret(node)
        if why is not None:
            found.append((path, why))
    return found


def _env_name(dotted: str) -> str:
    return ENV_PREFIX + ENV_NESTED.join(part.upper() for part in dotted.split("."))


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field; check the spelling against config.yaml"
    value = err.get("input")
    shown = "" if isinstance(value, dict) or err["type"] == "missing" else f" (got {value!r})"
    return f"  {loc}{shown}: {msg}; override with {_env_name(loc) if err['loc'] else 'the file'}"


@dataclass(frozen=True, slots=True)
class TransportWarning:
    """A link configured without TLS (or without checking the peer), for the warning at start."""

    receiver: str  # the config path, e.g. notify.webhooks.ops
    url: str  # scheme://host:port/path, never credentials, query or a token in the path
    loopback: bool  # the peer is on this machine: nothing crosses a network
    problem: str


def is_loopback(host: str | None) -> bool:
    """Tell whether host names this machine (localhost, 127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _shown(url: str) -> tuple[str, str | None]:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    netloc = parts.netloc.rpartition("@")[2]
    path = _SECRET_URL_PATH.sub("/bot/hook/…", parts.path)
    return f"{parts.scheme}://{netloc}{path}", host


def transport_warnings(settings: Settings) -> list[TransportWarning]:
    """Every receiver reached over http://, a plain-text SMTP, and external links without TLS."""
    out: list[TransportWarning] = []
    n = settings.notify
    urls: list[tuple[str, str | None]] = [
        *((f"notify.webhooks.{k}", str(w.url)) for k, w in n.webhooks.items()),
        *((f"notify.sms.{k}", c.url) for k, c in n.sms.items()),
        *((f"notify.robots.{k}", str(r.url)) for k, r in n.robots.items()),
        *([("notify.fire_119", str(n.fire_119.url))] if n.fire_119 is not None else []),
    ]
    for where, url in urls:
        if url is not None and url.lower().startswith("http://"):
            shown, host = _shown(url)
            out.append(
                TransportWarning(
                    where,
                    shown,
                    is_loopback(host),
                    "http:// sends alerts (and any signature or token) unencrypted; use https://",
                )
            )
    e = n.email
    if e is not None and not e.starttls:
        out.append(
            TransportWarning(
                "notify.email",
                f"smtp://{e.host}:{e.port}",
                is_loopback(e.host),
                "starttls: false sends alerts"
                + (" and the SMTP password" if e.username else "")
                + " unencrypted",
            )
        )
    if settings.embedded.enabled:
        return out  # ingest and the engine reach the private services over loopback
    mq, db = settings.mqtt, settings.database
    if not mq.tls.enabled and not is_loopback(mq.host):
        out.append(
            TransportWarning(
                "mqtt",
                f"mqtt://{mq.host}:{mq.port}",
                False,
                "mqtt.tls.enabled is false: ingest's password and all messages cross the "
                "network unencrypted",
            )
        )
    if mq.tls.enabled and not mq.tls.check_hostname:
        out.append(
            TransportWarning(
                "mqtt",
                f"mqtts://{mq.host}:{mq.port}",
                is_loopback(mq.host),
                "mqtt.tls.check_hostname is false: any certificate from the CA is accepted "
                "for this host",
            )
        )
    if db.sslmode not in ("verify-ca", "verify-full") and not is_loopback(db.host):
        problem = {
            "require": "encrypted, but the server's certificate is not checked",
            "prefer": "falls back to no encryption, and the server's certificate is not checked",
        }.get(db.sslmode, "not encrypted")
        out.append(
            TransportWarning(
                "database",
                f"postgresql://{db.host}:{db.port}/{db.dbname}",
                False,
                f"database.sslmode {db.sslmode}: {problem}; use verify-full with sslrootcert",
            )
        )
    return out


def load_settings(path: Path | str | None = None) -> Settings:
    """Load config.yaml (if any) plus environment overrides, or raise ConfigError that says why."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist; pass --config or create it")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must be a mapping at the top level")
        found = [f"  {s}: set {_env_name(s)} instead" for s in _find_secrets(loaded)]
        found += [
            f"  {s}: the URL carries a secret ({why}); set the whole URL in {_env_name(s)} instead"
            for s, why in _find_url_secrets(loaded)
        ]
        if found:
            lines = "\n".join(found)
            raise ConfigError(
                f"config file {p} holds secrets; move them to the environment:\n{lines}"
            )
        data = loaded
    try:
        return Settings(**data)
    except ValidationError as exc:
        where = f"config file {path}" if path is not None else "configuration"
        details = "\n".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"invalid {where}:\n{details}") from None
