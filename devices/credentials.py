"""Device MQTT passwords and their hashes in Mosquitto's own password-file format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

# Mosquitto 2.0's `$7$` is PBKDF2-HMAC-SHA512: `$7$<iterations>$<b64 salt>$<b64 digest>`.
# mosquitto_passwd writes 101 iterations and a 12-byte salt; the broker reads the count from
# the line, so these only have to match what it accepts.
ITERATIONS = 101
SALT_BYTES = 12
PASSWORD_BYTES = 18  # 24 URL-safe characters


def new_password() -> str:
    """Return a fresh random MQTT password."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Hash a password the way mosquitto_passwd does (`$7$`, PBKDF2-HMAC-SHA512)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify(password: str, hashed: str) -> bool:
    """Tell whether password matches a `$7$` hash (ours or mosquitto_passwd's)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(got, expected)


def hash_many(passwords: Sequence[str]) -> list[str]:
    """Hash many passwords on every core (OpenSSL's PBKDF2 runs without the GIL)."""
    if len(passwords) < 1000:
        return [mosquitto_hash(p) for p in passwords]
    workers = os.cpu_count() or 1
    step = -(-len(passwords) // workers)
    chunks = [passwords[i : i + step] for i in range(0, len(passwords), step)]
    with ThreadPoolExecutor(workers) as pool:
        done = pool.map(lambda chunk: [mosquitto_hash(p) for p in chunk], chunks)
        return [h for chunk in done for h in chunk]
