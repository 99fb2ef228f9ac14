"""Certificates for the private services: a private CA and a server certificate, made with openssl.

Debian's `openssl` tool (the library Mosquitto, PostgreSQL and Python's ssl already use) does
the work, so no Python crypto package is needed. Keys are RSA 2048: the one key type every
device TLS stack (mbedTLS, wolfSSL, 4G modules' firmware) accepts.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The names the generated server certificate always carries (devices on this machine, tests).
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest lifetime many TLS clients accept for a server certificate
RENEW_BEFORE_S = 30 * 86400  # a server certificate this close to its end is made again
KEY_ALGORITHM = "rsa:2048"


class TlsError(RuntimeError):
    """A certificate could not be made or read; the message says what to check."""


@dataclass(frozen=True, slots=True)
class CertFiles:
    """A server's certificate and key, and the CA certificate clients pin (None: a public CA)."""

    cert: Path
    key: Path
    ca: Path | None


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise TlsError("the openssl tool is not installed; install Debian's 'openssl' package")
    res = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed: {res.stderr.strip()[-1000:]}")


def _alt_names(hosts: Sequence[str]) -> str:
    lines, n_ip, n_dns = [], 0, 0
    for h in dict.fromkeys(hosts):  # ordered, without duplicates
        try:
            ipaddress.ip_address(h)
        except ValueError:
            n_dns += 1
            lines.append(f"DNS.{n_dns} = {h}")
        else:
            n_ip += 1
            lines.append(f"IP.{n_ip} = {h}")
    return "\n".join(lines)


def _config(hosts: Sequence[str]) -> str:
    # A config of our own: the system's openssl.cnf differs between releases.
    return f"""[req]
distinguished_name = dn
prompt = no
[dn]
CN = firesentry
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @alt
[alt]
{_alt_names(hosts)}
"""


def make_ca(folder: Path, name: str = "firesentry private CA") -> CertFiles:
    """Make a CA (folder/ca.crt, folder/ca.key, mode 0600) whose certificate devices can pin."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        t = Path(tmp)
        (t / "openssl.cnf").write_text(_config(LOOPBACK_NAMES))
        _openssl(
            *("req", "-x509", "-new", "-nodes", "-config", str(t / "openssl.cnf")),
            *("-extensions", "ca_ext", "-newkey", KEY_ALGORITHM, "-days", str(CA_DAYS)),
            *("-subj", f"/O=firesentry/CN={name}", "-set_serial", _serial()),
            *("-keyout", str(t / "ca.key"), "-out", str(t / "ca.crt")),
        )
        (t / "ca.key").chmod(0o600)
        (t / "ca.crt").chmod(0o644)
        os.replace(t / "ca.key", folder / "ca.key")
        os.replace(t / "ca.crt", folder / "ca.crt")
    return CertFiles(folder / "ca.crt", folder / "ca.key", None)


def make_server_cert(
    folder: Path, ca: CertFiles, hosts: Sequence[str], stem: str = "server"
) -> CertFiles:
    """Issue folder/<stem>.crt and .key (0600) from `ca` for `hosts` (IPs and DNS names)."""
    if not hosts:
        raise TlsError("a server certificate needs at least one host name or IP address")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        t = Path(tmp)
        cnf = t / "openssl.cnf"
        cnf.write_text(_config(hosts))
        _openssl(
            *("req", "-new", "-nodes", "-config", str(cnf), "-newkey", KEY_ALGORITHM),
            *("-subj", f"/O=firesentry/CN={hosts[0]}"),
            *("-keyout", str(t / "key.pem"), "-out", str(t / "req.csr")),
        )
        _openssl(
            *("x509", "-req", "-in", str(t / "req.csr"), "-CA", str(ca.cert)),
            *("-CAkey", str(ca.key), "-set_serial", _serial(), "-days", str(SERVER_DAYS)),
            *("-extfile", str(cnf), "-extensions", "server_ext", "-out", str(t / "cert.pem")),
        )
        (t / "key.pem").chmod(0o600)
        (t / "cert.pem").chmod(0o644)
        (t / "hosts").write_text("\n".join(hosts) + "\n")
        os.replace(t / "key.pem", folder / f"{stem}.key")
        os.replace(t / "cert.pem", folder / f"{stem}.crt")
        os.replace(t / "hosts", folder / f"{stem}.hosts")
    return CertFiles(folder / f"{stem}.crt", folder / f"{stem}.key", ca.cert)


def _serial() -> str:
    return "0x" + secrets.token_hex(16)


def expires_within(cert: Path, seconds: int) -> bool:
    """Tell whether the certificate in cert ends within `seconds` (or cannot be read)."""
    exe = shutil.which("openssl")
    if exe is None:
        raise TlsError("the openssl tool is not installed; install Debian's 'openssl' package")
    res = subprocess.run(
        [exe, "x509", "-checkend", str(seconds), "-noout", "-in", str(cert)],
        capture_output=True,
        check=False,
    )
    return res.returncode != 0


def ensure_server_certs(folder: Path, extra_hosts: Sequence[str] = ()) -> CertFiles:
    """The private CA and a server certificate under folder, made once and kept.

    The CA is never replaced (devices pin it); the server certificate is issued again when the
    host names change or it is within 30 days of its end.
    """
    hosts = [*LOOPBACK_NAMES, *(h for h in extra_hosts if h not in LOOPBACK_NAMES)]
    ca = CertFiles(folder / "ca.crt", folder / "ca.key", None)
    if not (ca.cert.exists() and ca.key.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        ca = make_ca(folder)
    server = CertFiles(folder / "server.crt", folder / "server.key", ca.cert)
    try:
        same_hosts = (folder / "server.hosts").read_text().split() == hosts
    except OSError:
        same_hosts = False
    if (
        same_hosts
        and server.cert.exists()
        and server.key.exists()
        and not expires_within(server.cert, RENEW_BEFORE_S)
    ):
        return server
    return make_server_cert(folder, ca, hosts)
