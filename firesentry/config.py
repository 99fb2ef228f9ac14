"""The one typed configuration: `config.yaml`, overridden by `FIRESENTRY_*` environment variables."""

from __future__ import annotations

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
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "FIRESENTRY_"
ENV_NESTED = "__"
# Keys whose values are secrets: the committed file must not hold them.
SECRET_KEYS = frozenset({"password", "secret", "token", "access_key_secret", "auth_token"})


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the field and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    @model_validator(mode="after")
    def _complete(self) -> SmsProviderConfig:
        need = {
            "generic": ["url"],
            "aliyun": ["access_key_id", "access_key_secret", "sign_name", "template_code"],
            "twilio": ["account_sid", "auth_token", "from_number"],
        }[self.kind]
        missing = [f for f in need if getattr(self, f) in (None, "")]
        if missing:
            raise ValueError(f"a {self.kind} SMS provider needs {', '.join(missing)}")
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
    starttls: bool = False
    timeout_s: float = Field(default=20.0, gt=0)


class NotifyConfig(_Section):
    """The outbox worker and its receivers."""

    routing_file: Path | None = Field(
        default=None, description="who is told of what; the shipped default when unset"
    )
    webhooks: dict[str, WebhookReceiver] = Field(default_factory=dict)
    sms: dict[str, SmsProviderConfig] = Field(default_factory=dict)
    robots: dict[str, RobotConfig] = Field(default_factory=dict)
    email: EmailConfig | None = None
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0)
    dead_after_s: float = Field(
        default=60.0,
        gt=0,
        description="outbox rounds failing this long (not a database outage): the process exits 70",
    )


class ApiConfig(_Section):
    """The HTTP API and the control-room console, served by `run`, `demo` and `api`."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="0: any free port")
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
        secrets = _find_secrets(loaded)
        if secrets:
            lines = "\n".join(f"  {s}: set {_env_name(s)} instead" for s in secrets)
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
