"""Fixtures of the command-line tests: the CLI pointed at the test database."""

from __future__ import annotations

from pathlib import Path

import pytest

from firesentry.embedded import Endpoints
from tests.store.test_registry_import import CONTACTS, DEVICES, UNITS


@pytest.fixture()
def cli_env(db: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Endpoints:
    """Point the command line at the test database from an empty working folder."""
    monkeypatch.chdir(tmp_path)
    for key in ("FIRESENTRY_CONFIG", "FIRESENTRY_EMBEDDED__DIR"):
        monkeypatch.delenv(key, raising=False)
    env = {
        "EMBEDDED__ENABLED": "false",
        "DATABASE__HOST": db.db_host,
        "DATABASE__PORT": str(db.db_port),
        "DATABASE__DBNAME": db.db_name,
        # As in production: the app role for the commands, the schema owner for migrations.
        "DATABASE__USER": db.app_user or db.db_user,
        "DATABASE__PASSWORD": db.app_password or db.db_password,
        "DATABASE__MIGRATE_USER": db.migrate_user or db.db_user,
        "DATABASE__MIGRATE_PASSWORD": db.migrate_password or db.db_password,
        "LOG__FORMAT": "json",
        "LOG__LEVEL": "info",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"FIRESENTRY_{key}", value)
    for name, text in (("units.csv", UNITS), ("devices.csv", DEVICES), ("contacts.csv", CONTACTS)):
        (tmp_path / name).write_text(text)
    return db
