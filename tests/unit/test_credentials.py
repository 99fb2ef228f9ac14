"""Device passwords hash to Mosquitto's own `$7$` format, both ways."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devices.credentials import hash_many, mosquitto_hash, new_password, verify


def test_hash_has_mosquitto_layout_and_verifies() -> None:
    """`$7$101$<12-byte salt>$<64-byte digest>`, and only the right password matches."""
    h = mosquitto_hash("s3cret")
    _, alg, iterations, salt, digest = h.split("$")
    assert (alg, iterations, len(salt), len(digest)) == ("7", "101", 16, 88)
    assert verify("s3cret", h)
    assert not verify("s3cret!", h)
    assert not verify("s3cret", "$6$abc$def")


def test_known_vector() -> None:
    """A fixed salt gives the same line every time (PBKDF2-HMAC-SHA512, 101 rounds)."""
    assert mosquitto_hash("pass", salt=b"0123456789ab") == mosquitto_hash(
        "pass", salt=b"0123456789ab"
    )
    assert mosquitto_hash("pass", salt=b"0123456789ab").startswith("$7$101$MDEyMzQ1Njc4OWFi$")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd absent")
def test_mosquitto_passwd_lines_verify(tmp_path: Path) -> None:
    """A line written by mosquitto_passwd verifies with our PBKDF2 reimplementation."""
    f = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(f), "dev-1", "pa55"], check=True)
    user, hashed = f.read_text().strip().split(":", 1)
    assert user == "dev-1" and hashed.startswith("$7$")
    assert verify("pa55", hashed) and not verify("pa56", hashed)


def test_hash_many_keeps_order() -> None:
    """Parallel hashing returns one hash per password, in order."""
    passwords = [new_password() for _ in range(1200)]
    hashes = hash_many(passwords)
    assert len(hashes) == 1200 and len(set(hashes)) == 1200
    assert verify(passwords[0], hashes[0]) and verify(passwords[-1], hashes[-1])
    assert len(new_password()) >= 24
