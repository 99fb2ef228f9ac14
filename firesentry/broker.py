"""`firesentry broker sync`: Mosquitto password and ACL files from the device registry."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devices.credentials import mosquitto_hash, new_password
from devices.records import ID_PATTERN
from firesentry.config import Settings
from ingest.consumer import EVENTS_SUFFIX
from store import registry as reg

PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
AUTH_CONF = "auth.conf"
INGEST_SECRET = "ingest.secret"
DEFAULT_INGEST_USER = "ingest"
# The GB/T 26875.3 gateway's account: it writes the events and heartbeats of every UTD it
# speaks for (ingest still takes them only for registered UTDs), and reads nothing.
GATEWAY_USER = "gateway"
GATEWAY_SECRET = "gateway.secret"


class BrokerSyncError(RuntimeError):
    """The broker files could not be written as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What broker sync wrote and did."""

    dir: Path
    devices: int
    without_password: int
    ingest_user: str
    action: str  # "restarted", or "written" (broker not running, or external)
    workers: tuple[str, ...] = ()  # the further ingest workers' accounts, kept or added


def render_passwords(entries: Iterable[tuple[str, str]]) -> str:
    """A Mosquitto password file: `username:$7$...` per line."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in entries)


def render_acl(
    topic_prefix: str, ingest_users: str | Sequence[str], gateway_user: str | None = None
) -> str:
    """The ACL: each device writes only below its own id, each ingest account reads everything,
    the gateway writes events and telemetry of any device."""
    users = [ingest_users] if isinstance(ingest_users, str) else list(ingest_users)
    gateway = (
        f"\nuser {gateway_user}\ntopic write {topic_prefix}/+/event\n"
        f"topic write {topic_prefix}/+/telemetry\n"
        if gateway_user
        else ""
    )
    return (
        "# written by firesentry broker sync; edits are overwritten\n"
        "# %u is the MQTT username, which is the device id.\n"
        # Only the three topics of the contract: a device can leave at most three retained
        # messages (Mosquitto 2.0 has no separate size limit for retained ones).
        f"pattern write {topic_prefix}/%u/telemetry\n"
        f"pattern write {topic_prefix}/%u/event\n"
        f"pattern write {topic_prefix}/%u/status\n"
        f"pattern read {topic_prefix}/%u/cmd\n"
        + "".join(f"\nuser {u}\ntopic read {topic_prefix}/#\n" for u in users)
        + gateway
    )


def render_auth_conf(folder: Path) -> str:
    """The broker settings that turn authentication on, with absolute paths into folder."""
    return (
        "allow_anonymous false\n"
        f"password_file {folder / PASSWORD_FILE}\n"
        f"acl_file {folder / ACL_FILE}\n"
        # The client id is the account: nobody can take over ingest's session (and receive, or
        # drop, what is queued for it) or knock a device off by connecting with its client id.
        "use_username_as_clientid true\n"
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
    more_ingest: Sequence[tuple[str, str]] = (),
    gateway: tuple[str, str] | None = None,
) -> Path:
    """Write passwd, acl and auth.conf into folder; return the path of auth.conf.

    devices are (id, hash); ingest (and each of more_ingest, one per further ingest worker) is
    (username, hash). owner (uid, gid) is the broker's user, which must be able to read the
    files when it reloads them after dropping root. Each ingest account comes with its events
    session's account (username + "-events", the same password): the broker binds client id
    to account, and ingest keeps events and status in a session of their own.
    """
    accounts = [
        account
        for user, hashed in [ingest, *more_ingest]
        for account in ((user, hashed), (user + EVENTS_SUFFIX, hashed))
    ]
    names = {u for u, _ in accounts} | ({gateway[0]} if gateway else set())
    clash = [d for d, _ in devices if d in names]
    if clash:
        raise BrokerSyncError(
            f"device id {clash[0]!r} is also an ingest or gateway account's username; rename "
            "the device or choose another account name"
        )
    folder.mkdir(parents=True, exist_ok=True)
    every = [*devices, *accounts, *([gateway] if gateway else [])]
    _write_private(folder / PASSWORD_FILE, render_passwords(every), owner)
    acl = render_acl(topic_prefix, [u for u, _ in accounts], gateway[0] if gateway else None)
    _write_private(folder / ACL_FILE, acl, owner)
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


def _kept_ingest(secret_file: Path, user: str = DEFAULT_INGEST_USER) -> tuple[str, str]:
    """A generated ingest account, its password kept in secret_file."""
    try:
        password = secret_file.read_text().strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = new_password()
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        _write_private(secret_file, password + "\n")
    return user, password


def worker_secret_file(folder: Path, user: str) -> Path:
    """Where the password of a further ingest worker's account is kept."""
    return folder / f"{user}.secret"


def known_workers(folder: Path) -> list[str]:
    """The further ingest workers that have an account in folder (a <name>.secret each)."""
    names = (p.name.removesuffix(".secret") for p in folder.glob("*.secret"))
    return sorted(
        n
        for n in names
        if n + ".secret" not in (INGEST_SECRET, GATEWAY_SECRET) and re.fullmatch(ID_PATTERN, n)
    )


def gateway_account(folder: Path) -> tuple[str, str]:
    """The gateway's account (username, password), its password kept in folder."""
    return _kept_ingest(folder / GATEWAY_SECRET, GATEWAY_USER)


def _workers(folder: Path, add: Sequence[str], drop: Sequence[str]) -> list[str]:
    """The workers to write: those already there and those added, less those dropped."""
    for name in (*add, *drop):
        if not re.fullmatch(ID_PATTERN, name):
            raise BrokerSyncError(f"ingest worker account {name!r} must match {ID_PATTERN}")
    known = known_workers(folder)
    unknown = sorted(set(drop) - set(known) - set(add))
    if unknown:
        raise BrokerSyncError(
            f"no ingest worker account {unknown[0]!r} to drop; the accounts are: "
            + (", ".join(known) or "none")
        )
    for name in drop:
        worker_secret_file(folder, name).unlink(missing_ok=True)
    return sorted((set(known) | set(add)) - set(drop))


def sync(
    settings: Settings,
    out: Path | None = None,
    workers: Sequence[str] = (),
    drop_workers: Sequence[str] = (),
) -> SyncResult:
    """Write the broker's auth files from the registry; restart the private broker if it is ours.

    With out, the files go to that folder for an external broker (and ingest's generated password
    to out/ingest.secret). Otherwise embedded services must be enabled; the files go to their
    mqtt folder, ingest's account is kept in state.json and the broker is restarted (not
    reloaded: see EmbeddedServices.apply_auth). workers adds one more account per further
    ingest worker (the broker binds client id to account, so workers cannot share one); their
    passwords are kept in <folder>/<name>.secret, and every later sync keeps them until
    drop_workers names them: a sync run after adding devices must not lock a running worker
    out, and with it the share of messages the broker routes to that worker's session.
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
    svc = embedded_services(settings)
    folder = out if out is not None else svc.mosquitto.root
    kept = _workers(folder, workers, drop_workers)
    more = [_kept_ingest(worker_secret_file(folder, w), w) for w in kept]
    more_hashed = [(u, mosquitto_hash(p)) for u, p in more]
    gw_user, gw_password = gateway_account(folder)
    gw = (gw_user, mosquitto_hash(gw_password))
    if out is not None:
        user, password = configured or _kept_ingest(out / INGEST_SECRET)
        write_broker_files(
            out,
            devices,
            (user, mosquitto_hash(password)),
            prefix,
            more_ingest=more_hashed,
            gateway=gw,
        )
        return SyncResult(out, len(devices), missing, user, "written", tuple(kept))
    user, password = configured or svc.ingest_account(DEFAULT_INGEST_USER)
    write_broker_files(
        folder,
        devices,
        (user, mosquitto_hash(password)),
        prefix,
        svc.mosquitto.owner(),
        more_hashed,
        gw,
    )
    action = svc.apply_auth()
    return SyncResult(folder, len(devices), missing, user, action, tuple(kept))


def ensure_events_account(settings: Settings) -> SyncResult | None:
    """On the private broker with auth on, write the files again if ingest's events account
    is missing (a broker synced before 2026-12): otherwise the events session, which carries
    every fire alarm, would be refused until someone ran `broker sync`. None: nothing to do."""
    if not settings.embedded.enabled or settings.mqtt.username:
        return None
    from firesentry.app import embedded_services

    svc = embedded_services(settings)
    passwd = svc.mosquitto.root / PASSWORD_FILE
    if not svc.mosquitto.auth_conf.exists() or not passwd.exists():
        return None
    user = DEFAULT_INGEST_USER + EVENTS_SUFFIX
    if any(line.startswith(f"{user}:") for line in passwd.read_text().splitlines()):
        return None
    return sync(settings)
