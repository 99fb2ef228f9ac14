"""`firesentry broker sync`: Mosquitto password and ACL files from the device registry."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devices.credentials import mosquitto_hash, new_password
from firesentry.config import Settings
from store import registry as reg

PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
AUTH_CONF = "auth.conf"
INGEST_SECRET = "ingest.secret"
DEFAULT_INGEST_USER = "ingest"


class BrokerSyncError(RuntimeError):
    """The broker files could not be written as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What broker sync wrote and did."""

    dir: Path
    devices: int
    without_password: int
    ingest_user: str
    action: str  # "restarted", "reloaded", "written" (broker not running or external)


def render_passwords(entries: Iterable[tuple[str, str]]) -> str:
    """A Mosquitto password file: `username:$7$...` per line."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in entries)


def render_acl(topic_prefix: str, ingest_user: str) -> str:
    """The ACL: each device writes only below its own id, ingest reads everything."""
    return (
        "# written by firesentry broker sync; edits are overwritten\n"
        "# %u is the MQTT username, which is the device id.\n"
        f"pattern write {topic_prefix}/%u/#\n"
        f"pattern read {topic_prefix}/%u/cmd\n"
        "\n"
        f"user {ingest_user}\n"
        f"topic read {topic_prefix}/#\n"
    )


def render_auth_conf(folder: Path) -> str:
    """The broker settings that turn authentication on, with absolute paths into folder."""
    return (
        "allow_anonymous false\n"
        f"password_file {folder / PASSWORD_FILE}\n"
        f"acl_file {folder / ACL_FILE}\n"
    )


def _write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Write a 0600 file atomically so the broker never reads half of it on reload."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)


def write_broker_files(
    folder: Path,
    devices: list[tuple[str, str]],
    ingest: tuple[str, str],
    topic_prefix: str,
    owner: tuple[int, int] | None = None,
) -> Path:
    """Write passwd, acl and auth.conf into folder; return the path of auth.conf.

    devices are (id, hash); ingest is (username, hash). owner (uid, gid) is the broker's user,
    which must be able to read the files when it reloads them after dropping root.
    """
    clash = [d for d, _ in devices if d == ingest[0]]
    if clash:
        raise BrokerSyncError(
            f"device id {clash[0]!r} is also the ingest account's username; rename the device "
            "or set mqtt.username to another name"
        )
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(folder / PASSWORD_FILE, render_passwords([*devices, ingest]), owner)
    _write_private(folder / ACL_FILE, render_acl(topic_prefix, ingest[0]), owner)
    _write_private(folder / AUTH_CONF, render_auth_conf(folder.resolve()), owner)
    return folder / AUTH_CONF


def _configured_ingest(settings: Settings) -> tuple[str, str] | None:
    """ingest's (username, password) from mqtt.username and FIRESENTRY_MQTT__PASSWORD, if set."""
    mq = settings.mqtt
    if not mq.username:
        return None
    if mq.password is None:
        raise BrokerSyncError(
            f"mqtt.username is {mq.username!r} but FIRESENTRY_MQTT__PASSWORD is not set; "
            "the password file needs ingest's password"
        )
    return mq.username, mq.password.get_secret_value()


def _kept_ingest(secret_file: Path) -> tuple[str, str]:
    """The generated ingest account for an external broker, its password kept in secret_file."""
    try:
        password = secret_file.read_text().strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = new_password()
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        _write_private(secret_file, password + "\n")
    return DEFAULT_INGEST_USER, password


def sync(settings: Settings, out: Path | None = None) -> SyncResult:
    """Write the broker's auth files from the registry; reload the private broker if it is ours.

    With out, the files go to that folder for an external broker (and ingest's generated password
    to out/ingest.secret). Otherwise embedded services must be enabled; the files go to their
    mqtt folder, ingest's account is kept in state.json and the broker is reloaded (restarted the
    first time, so that clients connected anonymously before are dropped).
    """
    from firesentry.app import embedded_services, resolve_endpoints

    if out is None and not settings.embedded.enabled:
        raise BrokerSyncError(
            "embedded services are disabled; pass --out DIR to write the files for your broker"
        )
    ep = resolve_endpoints(settings, start=True)
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        devices, missing = reg.password_hashes(conn)
    prefix = settings.mqtt.topic_prefix
    configured = _configured_ingest(settings)
    if out is not None:
        user, password = configured or _kept_ingest(out / INGEST_SECRET)
        write_broker_files(out, devices, (user, mosquitto_hash(password)), prefix)
        return SyncResult(out, len(devices), missing, user, "written")
    svc = embedded_services(settings)
    user, password = configured or svc.ingest_account(DEFAULT_INGEST_USER)
    folder = svc.mosquitto.root
    write_broker_files(
        folder, devices, (user, mosquitto_hash(password)), prefix, svc.mosquitto.owner()
    )
    action = svc.apply_auth()
    return SyncResult(folder, len(devices), missing, user, action)
