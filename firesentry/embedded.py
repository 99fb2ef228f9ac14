"""Private Mosquitto and PostgreSQL under one folder, on free loopback ports (`firesentry up`)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg

from firesentry.tls import TlsError, ensure_server_certs

LOOPBACK = "127.0.0.1"
DB_NAME = "firesentry"
DB_USER = "firesentry"


class EmbeddedError(RuntimeError):
    """A private service could not be started or reached; the message says what to check."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the running services listen and how to log in."""

    mqtt_host: str
    mqtt_port: int
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str
    # The schema owner migrations run as, and the role the engine and the API log in as, which
    # owns nothing (store/roles.py); None: db_user, as with one configured database user.
    migrate_user: str | None = None
    migrate_password: str | None = None
    app_user: str | None = None
    app_password: str | None = None
    # ingest's broker account once `firesentry broker sync` has turned authentication on.
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls_port: int = 0  # the broker's MQTT-over-TLS listener; 0: none
    # libpq's sslmode and sslrootcert (database.sslmode); None: libpq's default (prefer).
    db_sslmode: str | None = None
    db_sslrootcert: str | None = None

    def dsn(self, dbname: str | None = None) -> str:
        """Return a libpq connection string for the database (or another one on the cluster)."""
        return psycopg.conninfo.make_conninfo(
            host=self.db_host,
            port=self.db_port,
            dbname=dbname or self.db_name,
            user=self.db_user,
            password=self.db_password,
            sslmode=self.db_sslmode,
            sslrootcert=self.db_sslrootcert,
        )

    def migrate_dsn(self) -> str:
        """The DSN migrations run with: the schema owner (db_user when none is set)."""
        return self._as(self.migrate_user, self.migrate_password).dsn()

    def app_dsn(self) -> str:
        """The DSN the engine and the API connect with: the app role (db_user when none is set)."""
        return self.as_app().dsn()

    def as_app(self) -> Endpoints:
        """These endpoints with dsn() logging in as the app role (the owner stays for migrations)."""
        return self._as(self.app_user, self.app_password)

    def _as(self, user: str | None, password: str | None) -> Endpoints:
        if user is None:
            return self
        return dataclasses.replace(self, db_user=user, db_password=password or "")


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Tell whether something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def find_pg_bin(configured: str | None = None) -> Path:
    """Find the folder holding initdb and pg_ctl (newest PostgreSQL under /usr/lib/postgresql)."""
    candidates: list[Path] = []
    if configured:
        candidates.append(Path(configured))
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        candidates.extend(v / "bin" for v in versions)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise EmbeddedError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install the 'postgresql' "
        "package (make demo does) or set embedded.pg_bin_dir"
    )


def timescaledb_installed(bin_dir: Path) -> bool:
    """Tell whether the timescaledb extension is installed for the PostgreSQL in bin_dir."""
    res = subprocess.run(
        [str(bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False
    )
    share = Path(res.stdout.strip()) if res.returncode == 0 else bin_dir.parent / "share"
    return (share / "extension" / "timescaledb.control").exists()


def _is_root() -> bool:
    return os.geteuid() == 0


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _reachable_by(user: str, path: Path) -> bool:
    """Tell whether `user` can enter every folder down to path (root's home often is 0700)."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    res = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(probe)], check=False)
    return res.returncode == 0


def _chown_tree(path: Path, user: str) -> None:
    info = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, info.pw_uid, info.pw_gid, follow_symlinks=False)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(predicate: object, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise EmbeddedError(f"{what} did not come up within {timeout:.0f}s; log {log}:\n{_tail(log)}")


class _Postgres:
    """A private PostgreSQL cluster; as root it runs as the `postgres` user, which PostgreSQL needs."""

    def __init__(self, root: Path, bin_dir: Path, durable: bool, timescaledb: bool = False) -> None:
        self.root = root
        self.timescaledb = timescaledb
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.bin = bin_dir
        self.durable = durable
        self.run_as = "postgres" if _is_root() else None

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, *args]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._cmd(*args), capture_output=True, text=True, check=False)

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self, password: str) -> None:
        if self.run_as and not _user_exists(self.run_as):
            raise EmbeddedError("running as root needs a 'postgres' user; install 'postgresql'")
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if self.run_as:
            _chown_tree(self.root, self.run_as)
        args = [str(self.bin / "initdb"), "-D", str(self.data), "-U", DB_USER, "-E", "UTF8"]
        args += ["--no-locale", "--auth=scram-sha-256", f"--pwfile={pwfile}"]
        if not self.durable:
            args.append("--no-sync")
        res = self._run(*args)
        pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise EmbeddedError(f"initdb failed in {self.data}:\n{res.stderr[-2000:]}")
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write("\ninclude_if_exists = 'firesentry.conf'\n")

    def running(self) -> bool:
        if not self.initialised():
            return False
        return self._run(str(self.bin / "pg_ctl"), "status", "-D", str(self.data)).returncode == 0

    def start(self, port: int) -> None:
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(port),
            # No socket in /var/run/postgresql: a system cluster may own it.
            "unix_socket_directories": "''",
            "max_connections": "60",
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
        }
        if self.timescaledb:
            if not timescaledb_installed(self.bin):
                raise EmbeddedError(
                    "embedded.timescaledb is true but the timescaledb extension is not installed "
                    f"for {self.bin.parent.name}; install it or set embedded.timescaledb: false"
                )
            settings["shared_preload_libraries"] = "'timescaledb'"
            settings["timescaledb.telemetry_level"] = "off"  # no phoning home from an offline site
        text = "".join(f"{k} = {v}\n" for k, v in settings.items())
        conf = self.data / "firesentry.conf"
        conf.write_text(text)
        if self.run_as:
            _chown_tree(self.root, self.run_as)
        res = self._run(
            str(self.bin / "pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
        )
        if res.returncode != 0:
            raise EmbeddedError(f"PostgreSQL did not start; log {self.log}:\n{_tail(self.log)}")

    def stop(self) -> None:
        if self.running():
            self._run(str(self.bin / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data))


# Mosquitto 2.0 settings of the private broker (issue 11). Numbers: python -m
# bench.broker_persistence, bench/results/broker-persistence-20261201T100716Z-vm.json
# (Mosquitto 2.0.11, 2-core VM, ext4, 3 publisher processes, 135-byte payloads).
#
# Mosquitto PUBACKs a message before it is on disk: its only persistence is a rewrite of the
# whole mosquitto.db (fsync, rename), ~1.1 us per queued message here (108 ms at 100k; 10k
# retained add ~8 ms), and the PUBACKs of a loop turn leave before that turn's save. So no
# setting makes a PUBACK durable. Each setting, killed with SIGKILL right after the last
# PUBACK (PUBACK rate with a 100k backlog):
# - autosave_interval 30 (before): loses everything since the last save, up to 30 s (20k of
#   20k, 100k of 100k); 9.8k msgs/s.
# - autosave_on_changes true + autosave_interval 1 (a save per loop turn that queued
#   something): 26 msgs/s from 90k to 100k queued, 192 from 0 to 20k (0.3-2 % of before), and
#   still 3 lost (a save under way). Messages sent in flight to a connected session are not
#   counted as changes: with ingest connected but holding its acks (a slow or failed commit)
#   nothing was saved and 20k of 20k were lost. Rejected.
# - autosave_on_changes true + autosave_interval 1000: <= 1000 queued messages lost (879,
#   998), 8.4k msgs/s; the same blind spot (20k of 20k lost with acks held). Rejected.
# - autosave_interval 1: a save starts when `last_backup + 1 < now` in whole seconds, i.e.
#   every ~2 s (1.95-2.04 s measured under load); 10.7k msgs/s (publishers were the limit;
#   broker CPU 11.3 us/msg vs 10.8), offline and connected sessions alike. Chosen.
# The window: a broker crash loses the messages PUBACKed after the start of the last
# completed save: at most ~2 s of traffic plus one save's duration (measured: 3,292 of 100k
# with the last save 0.5 s before the kill, 18,141 of 20k with it 1.5 s before). The test
# tests/faults/test_broker_crash.py checks that nothing PUBACKed before a completed save is
# lost. The same setting serves durable=False (tests): at their backlogs a save is ~1-25 ms.
PERSISTENCE = ("autosave_on_changes false", "autosave_interval 1")
MAX_PAYLOAD_BYTES = 64 * 1024  # ingest.max_payload_bytes default (firesentry/config.py)
# Fixed header, topic and MQTT 5 properties around a payload. Mosquitto 2.0 checks
# max_packet_size on packets it receives; what it forwards is the same payload and topic plus
# a few bytes of properties, so clients announcing the same limit get everything.
PACKET_HEADROOM_BYTES = 4096
# Queue bounds per client. Every save rewrites the whole queue and stops the broker's only
# thread while it runs (fire alarms included), so the bound is set by the save, not by memory.
# Measured at the bound (bench/results/broker-persistence-bound-20261201T094618Z-vm.json):
# 1M queued 135-byte messages, a 241 MB file, 1.08 s per save, so a 1.1 s stall every ~2 s;
# the PUBACK rate fell to 4.5k msgs/s, the drain was 9k msgs/s, RSS 446 MB (of 24 GiB). Much
# beyond it saves run back to back and the broker barely serves. 1M is ~17 min of a
# 10,000-device fleet each sending every 10 s (1,000 msgs/s), ~1.7 h at one message a minute;
# a longer outage needs a broker with durable storage. The byte bound holds big
# store-and-forward batches to about the same save (128 MiB + ~105 B a message). Past either
# bound Mosquitto still PUBACKs but drops the message for that session (it logs "Outgoing
# messages are being dropped for client ..."): 20,000 of 1,020,000 in the measurement.
MAX_QUEUED_MESSAGES = 1_000_000
MAX_QUEUED_BYTES = 128 * 1024 * 1024
# Retained messages (issue 12): Mosquitto 2.0.11 has no size limit of their own
# (retain_available false would refuse the retained status topic the contract needs;
# message_size_limit, deprecated, bounds every message alike). So a retained message is bounded
# by max_packet_size like any other, and how many a device can leave by an ACL that lets it
# write only its telemetry, event and status topics (firesentry/broker.py), not fs/v1/<id>/#.
# With per_listener_settings false the accounts, ACL and the limits above apply to the TLS
# listener exactly as to the plain one.
TLS_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
# mosquitto.conf options that belong to the listener above them whatever per_listener_settings
# says (Mosquitto 2.0 man page, "Listeners"): repeated in the TLS listener's block.
LISTENER_OPTIONS = frozenset(
    {
        "use_username_as_clientid",
        "use_identity_as_username",
        "use_subject_as_username",
        "require_certificate",
        "max_connections",
        "max_topic_alias",
        "mount_point",
        "protocol",
    }
)


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The private broker's MQTT-over-TLS listener (README "MQTT over TLS")."""

    enabled: bool = True
    bind: str = LOOPBACK  # 0.0.0.0: every IPv4 interface (devices on public networks)
    port: int = 0  # 0: a free port, chosen once and kept in mqtt/tls_port (8883 in production)
    hosts: tuple[str, ...] = ()  # names and IPs beyond loopback in the generated certificate
    cert_file: Path | None = None  # your own certificate (with its chain) instead of generated
    key_file: Path | None = None
    ca_file: Path | None = None  # with your own certificate: the CA devices pin (None: public)


@dataclass(frozen=True, slots=True)
class _TlsListener:
    port: int
    bind: str
    cert: Path
    key: Path


class _Mosquitto:
    """A private Mosquitto with persistence and in-flight limits that ack-after-commit needs."""

    def __init__(
        self,
        root: Path,
        binary: str,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        tls: BrokerTls | None = None,
    ) -> None:
        self.root = root
        self.max_payload_bytes = max_payload_bytes
        self.conf = root / "mosquitto.conf"
        self.data = root / "data"
        self.log = root / "mosquitto.log"
        self.pidfile = root / "mosquitto.pid"
        self.binary = binary
        self.tls = tls if tls is not None and tls.enabled else None
        # The generated CA and server certificate, beside mqtt/ (PostgreSQL may use them too).
        self.tls_dir = root.parent / "tls"
        self._tls_port_file = root / "tls_port"
        self._tls_listener: _TlsListener | None = None

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def run_user(self) -> str:
        """The user the broker runs as: `mosquitto` when started by root and it can reach root."""
        user = pwd.getpwuid(os.geteuid()).pw_name
        if _is_root() and _user_exists("mosquitto") and _reachable_by("mosquitto", self.root):
            user = "mosquitto"  # drop privileges as Mosquitto does by default
        return user

    def owner(self) -> tuple[int, int] | None:
        """(uid, gid) files must belong to so the broker can re-read them; None: ours will do."""
        user = self.run_user()
        if user == pwd.getpwuid(os.geteuid()).pw_name:
            return None
        info = pwd.getpwnam(user)
        return info.pw_uid, info.pw_gid

    @property
    def auth_conf(self) -> Path:
        """Authentication settings written by `firesentry broker sync`; absent: anonymous."""
        return self.root / "auth.conf"

    def start(self, port: int) -> None:
        binary = shutil.which(self.binary) or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            raise EmbeddedError(
                "mosquitto not found; install the 'mosquitto' package (make demo does)"
            )
        self.data.mkdir(parents=True, exist_ok=True)
        self._tls_listener = self._prepare_tls(port)
        user = self.run_user()
        self.conf.write_text("\n".join(self.config_lines(port, user)) + "\n")
        self.pidfile.unlink(missing_ok=True)
        if user != pwd.getpwuid(os.geteuid()).pw_name:
            _chown_tree(self.root, user)
        res = subprocess.run(
            [binary, "-c", str(self.conf), "-d"], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            raise EmbeddedError(
                f"mosquitto failed to start: {res.stderr.strip()}\n{_tail(self.log)}"
            )
        _wait(lambda: port_open(port), 15, "Mosquitto", self.log)
        tls = self._tls_listener
        if tls is not None:
            probe = LOOPBACK if tls.bind in TLS_WILDCARD_BINDS else tls.bind
            _wait(lambda: port_open(tls.port, probe), 15, "Mosquitto's TLS listener", self.log)

    def tls_port(self) -> int:
        """The TLS listener's port, kept across restarts; 0 when there is no TLS listener."""
        if self.tls is None:
            return 0
        if self.tls.port:
            return self.tls.port
        try:
            return int(self._tls_port_file.read_text().strip())
        except (OSError, ValueError):
            return 0

    def tls_ca(self) -> Path | None:
        """The CA certificate devices pin for the TLS listener (None: off, or a public CA)."""
        if self.tls is None:
            return None
        if self.tls.cert_file is not None:
            return self.tls.ca_file.resolve() if self.tls.ca_file is not None else None
        return self.tls_dir / "ca.crt"

    def tls_note(self) -> str:
        """A few words on the TLS listener for `firesentry status` ("" when there is none)."""
        port, ca = self.tls_port(), self.tls_ca()
        if self.tls is None or not port:
            return ""
        pin = f", devices pin {ca}" if ca is not None else ""
        return f"; TLS on {self.tls.bind or '*'}:{port}{pin}"

    def _prepare_tls(self, plain_port: int) -> _TlsListener | None:
        """Choose the TLS port and put the certificate and key where the broker's user reads them."""
        tls = self.tls
        if tls is None:
            return None
        port = self.tls_port()
        if not port or (not tls.port and (port == plain_port or port_open(port))):
            port = free_port()
            while port == plain_port:
                port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tls_port_file.write_text(f"{port}\n")
        try:
            if tls.cert_file is not None and tls.key_file is not None:
                cert, key = tls.cert_file, tls.key_file
            else:
                extra = [*tls.hosts]
                if tls.bind not in TLS_WILDCARD_BINDS and tls.bind != LOOPBACK:
                    extra.append(tls.bind)
                made = ensure_server_certs(self.tls_dir, extra)
                cert, key = made.cert, made.key
        except TlsError as exc:
            raise EmbeddedError(f"no certificate for the TLS listener: {exc}") from exc
        # Copies inside mqtt/ (chowned to the broker's user at start): the broker never reads
        # the CA key, nor a key file of yours that only root may read.
        here = self.root / "tls"
        here.mkdir(exist_ok=True)
        for src, name in ((cert, "server.crt"), (key, "server.key")):
            dst = here / name
            tmp = dst.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Path(src).read_bytes())
            os.replace(tmp, dst)
        return _TlsListener(port, tls.bind, here / "server.crt", here / "server.key")

    def tls_lines(self) -> list[str]:
        """The TLS listener's block: last in mosquitto.conf, as listener options follow it."""
        tls = self._tls_listener
        if tls is None:
            return []
        lines = [
            "# MQTT over TLS: the same accounts, ACL and limits as the plain listener",
            f"listener {tls.port} {tls.bind}".rstrip(),
            f"certfile {tls.cert}",
            f"keyfile {tls.key}",
            "tls_version tlsv1.2",
        ]
        # Options of a listener (not global even with per_listener_settings false) from
        # auth.conf apply to the TLS listener too, use_username_as_clientid above all.
        if self.auth_conf.exists():
            for line in self.auth_conf.read_text().splitlines():
                if line.split(" ", 1)[0] in LISTENER_OPTIONS:
                    lines.append(line)
        return lines

    def persistence_lines(self) -> list[str]:
        """How often the broker writes its state to mosquitto.db (see PERSISTENCE)."""
        return list(PERSISTENCE)

    def config_lines(self, port: int, user: str) -> list[str]:
        """The mosquitto.conf that start() writes, one setting a line."""
        lines = [
            "# written by firesentry up; edits are overwritten at the next start",
            "per_listener_settings false",
            f"listener {port} {LOOPBACK}",
            f"user {user}",
            "persistence true",
            f"persistence_location {self.data}/",
            *self.persistence_lines(),
            # MQTT 3.1.1 peers get 20 in flight by default; ingest holds acks for a whole batch.
            "max_inflight_messages 65535",
            # The default 1000 queued per session is far too few while ingest restarts; the
            # bounds below keep a flood from taking the machine's memory (see MAX_QUEUED_BYTES).
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_queued_bytes {MAX_QUEUED_BYTES}",
            # A packet above this disconnects its sender. The headroom lets a payload a little
            # over max_payload_bytes reach ingest, which dead-letters it with a reason.
            f"max_packet_size {self.max_payload_bytes + PACKET_HEADROOM_BYTES}",
            "set_tcp_nodelay true",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            f"pid_file {self.pidfile}",
        ]
        if self.auth_conf.exists():
            lines.extend(self.auth_conf.read_text().splitlines())
        else:
            lines.append("allow_anonymous true")
        return [*lines, *self.tls_lines()]

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        # It saves every session and queue on the way down (a second or more at the queue bound,
        # see MAX_QUEUED_MESSAGES); SIGKILL would lose what was accepted since the last autosave.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.05)
        if self.pid() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def reload(self) -> None:
        """Make Mosquitto re-read its config (SIGHUP); not for auth changes (see apply_auth)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)


class EmbeddedServices:
    """Start, reuse, stop and describe the private broker and database under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        mosquitto_bin: str = "mosquitto",
        pg_bin_dir: str | None = None,
        durable: bool = True,
        timescaledb: bool = False,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        tls: BrokerTls | None = None,
    ) -> None:
        self.root = root.resolve()
        self.state_file = self.root / "state.json"
        self.mosquitto = _Mosquitto(
            self.root / "mqtt", mosquitto_bin, max_payload_bytes, tls or BrokerTls()
        )
        self._pg_bin_dir = pg_bin_dir
        self._durable = durable
        self._timescaledb = timescaledb

    def _pg_root(self) -> Path:
        here = self.root / "pg"
        if not _is_root() or not _user_exists("postgres") or _reachable_by("postgres", self.root):
            return here
        # PostgreSQL refuses to run as root, and the postgres user cannot reach this folder
        # (say, under /root): keep the cluster in a folder of its own, named after ours.
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"firesentry-pg-{digest}"

    @property
    def postgres(self) -> _Postgres:
        """The private PostgreSQL cluster."""
        return _Postgres(
            self._pg_root(), find_pg_bin(self._pg_bin_dir), self._durable, self._timescaledb
        )

    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(state, indent=2))
        os.replace(tmp, self.state_file)

    def _save_state(self, ep: Endpoints) -> None:
        # Keep ingest's broker account even while auth is off: the next sync reuses it.
        state = self._load_state()
        state.update({k: v for k, v in asdict(ep).items() if v is not None})
        self._write_state(state)

    def _with_broker_account(self, ep: Endpoints, state: dict[str, Any]) -> Endpoints:
        if not self.mosquitto.auth_conf.exists() or not state.get("mqtt_username"):
            return dataclasses.replace(ep, mqtt_username=None, mqtt_password=None)
        return dataclasses.replace(
            ep,
            mqtt_username=str(state["mqtt_username"]),
            mqtt_password=str(state.get("mqtt_password") or ""),
        )

    def ingest_account(self, username: str) -> tuple[str, str]:
        """ingest's broker account (username, password), generated and kept in state.json."""
        self.root.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        if state.get("mqtt_username") != username or not state.get("mqtt_password"):
            state["mqtt_username"] = username
            state["mqtt_password"] = secrets.token_urlsafe(24)
            self._write_state(state)
        return str(state["mqtt_username"]), str(state["mqtt_password"])

    def apply_auth(self) -> str:
        """Make a running broker use auth.conf and its files by restarting it; say "restarted"
        or "written" (not running: the next start reads them).

        Never by SIGHUP, though Mosquitto re-reads the files on it: 2.0.11 (Debian 12's)
        re-checks every session on a reload, offline ones too, and disconnecting an offline
        session that has an expiry a second time puts it on the session-expiry list twice. At
        the expiry the broker frees the session but keeps one entry, which then points at
        whatever gets that memory: a connected client is expired, then the broker segfaults
        (`session_expiry__check`; fixed upstream only in 2025). A restart costs every client a
        reconnect (a second or two), loses nothing (sessions and queues are saved on the way
        down and loaded on the way up) and also drops clients that connected anonymously
        before auth was turned on.
        """
        if not self.mosquitto.running():
            return "written"
        port = int(self._load_state().get("mqtt_port") or 0)
        self.mosquitto.stop()
        self.mosquitto.start(port or free_port())
        return "restarted"

    def _with_roles(self, ep: Endpoints, state: dict[str, Any]) -> Endpoints:
        """ep with the schema owner's and the app role's logins (passwords kept in state.json)."""
        from store.roles import APP_ROLE, OWNER_ROLE

        return dataclasses.replace(
            ep,
            migrate_user=OWNER_ROLE,
            migrate_password=str(state.get("migrate_password") or secrets.token_urlsafe(24)),
            app_user=APP_ROLE,
            app_password=str(state.get("app_password") or secrets.token_urlsafe(24)),
        )

    def up(self, backend: Literal["auto", "native", "timescale"] = "auto") -> Endpoints:
        """Start whatever is not running (reusing what is), migrate, and return the endpoints.

        The database gets its roles and is migrated as the schema owner (`backend` as
        storage.backend).

        dsn() logs in as the cluster's superuser (administration, tests); the engine and the
        API use app_dsn() / as_app(), migrations migrate_dsn().
        """
        self.root.mkdir(parents=True, exist_ok=True)
        # postgres/mosquitto users must be able to reach their folders below ours.
        self.root.chmod(0o755)
        state = self._load_state()
        password = str(state.get("db_password") or secrets.token_urlsafe(24))
        pg = self.postgres
        if not pg.initialised():
            pg.init(password)
        pg_port = int(state.get("db_port") or 0)
        if not pg.running():
            if not pg_port or port_open(pg_port):
                pg_port = free_port()
            pg.start(pg_port)
        mqtt_port = int(state.get("mqtt_port") or 0)
        if not self.mosquitto.running():
            if not mqtt_port or port_open(mqtt_port):
                mqtt_port = free_port()
            self.mosquitto.start(mqtt_port)
        ep = Endpoints(LOOPBACK, mqtt_port, LOOPBACK, pg_port, DB_NAME, DB_USER, password)
        ep = dataclasses.replace(ep, mqtt_tls_port=self.mosquitto.tls_port())
        ep = self._with_roles(ep, state)
        self._save_state(ep)
        _ensure_database(ep, timescaledb=self._timescaledb, backend=backend)
        return self._with_broker_account(ep, self._load_state())

    def endpoints(self) -> Endpoints | None:
        """Return the endpoints of running services, or None when they are not up."""
        state = self._load_state()
        if not state or not self.mosquitto.running() or not self.postgres.running():
            return None
        fields = {k: state[k] for k in Endpoints.__dataclass_fields__ if k in state}
        return self._with_broker_account(Endpoints(**fields), state)

    def down(self) -> None:
        """Stop both services; data stays for the next `up`."""
        self.mosquitto.stop()
        pg = self.postgres
        if pg.initialised():
            pg.stop()

    def destroy(self) -> None:
        """Stop both services and delete all they keep, for throwaway ones (tests, benchmarks):
        the folder, and the database's own folder where it lives outside it (see _pg_root),
        which deleting the folder alone left behind (80 clusters, 11 GB in /var/tmp after a
        day of test and benchmark runs)."""
        self.down()
        pg_root = self._pg_root()
        if not pg_root.is_relative_to(self.root):
            shutil.rmtree(pg_root, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> dict[str, str]:
        """Describe each service in a line."""
        state = self._load_state()
        pid = self.mosquitto.pid()
        mq = f"running pid {pid} on {LOOPBACK}:{state.get('mqtt_port')}" if pid else "stopped"
        mq += self.mosquitto.tls_note() if pid else ""
        try:
            pg_running = self.postgres.running()
        except EmbeddedError as exc:
            return {"mosquitto": mq, "postgresql": str(exc)}
        pgs = f"running on {LOOPBACK}:{state.get('db_port')}" if pg_running else "stopped"
        return {"mosquitto": mq, "postgresql": pgs, "dir": str(self.root)}


def _ensure_database(
    ep: Endpoints,
    *,
    timescaledb: bool = False,
    backend: Literal["auto", "native", "timescale"] = "auto",
) -> None:
    """Set up the database, its owner and app roles, migrate it as the owner, grant the app role.

    As the superuser: the two roles, the database (owned by the owner), advisory locks for
    those two only; then migrations as the owner and grant_app.
    """
    from store import bootstrap, roles
    from store.migrate import migrate

    owner, app = ep.migrate_user or roles.OWNER_ROLE, ep.app_user or roles.APP_ROLE
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(ep.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
                roles.ensure_login_role(conn, owner, ep.migrate_password or "")
                roles.ensure_login_role(conn, app, ep.app_password or "")
                if not bootstrap.database_exists(conn, ep.db_name):
                    bootstrap.create_database(conn, ep.db_name, owner)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        roles.prepare_database(conn, owner, app)
        if timescaledb and backend != "native":
            # Only a superuser may create it; the owner's migration then finds it there.
            bootstrap.ensure_timescaledb(conn)
    migrate(ep.migrate_dsn(), backend)
    with psycopg.connect(ep.migrate_dsn(), autocommit=True) as conn:
        roles.grant_app(conn, app)
