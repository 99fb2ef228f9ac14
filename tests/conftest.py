"""Session services: a private Mosquitto and PostgreSQL in a temporary folder, one database per test."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog

from firesentry.embedded import EmbeddedServices, Endpoints
from firesentry.logs import configure_logging
from store.migrate import migrate

TEMPLATE_DB = "fs_template"
_counter = itertools.count(1)


@pytest.fixture(scope="session")
def embedded() -> Iterator[EmbeddedServices]:
    """The private services of the test session (fault tests stop and start them)."""
    root = Path(tempfile.mkdtemp(prefix="firesentry-test-"))
    svc = EmbeddedServices(root, durable=False)
    try:
        yield svc
    finally:
        svc.destroy()


@pytest.fixture(scope="session")
def services(embedded: EmbeddedServices) -> Iterator[Endpoints]:
    """Start private services for the whole test session; never the system ones."""
    configure_logging("info", "json")
    ep = embedded.up()
    migrate(ep.dsn())
    with psycopg.connect(ep.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}" TEMPLATE "{ep.db_name}"')
    yield ep


@pytest.fixture()
def db(services: Endpoints) -> Iterator[Endpoints]:
    """A fresh, migrated database for one test (cloned from a template)."""
    name = f"fs_test_{next(_counter)}"
    with psycopg.connect(services.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield dataclasses.replace(services, db_name=name)
    with psycopg.connect(services.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def prefix() -> str:
    """A topic prefix of this test only, so that tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:8]}/v1"


@pytest.fixture()
def cli_logging() -> Iterator[None]:
    """Put logging back after an in-process CLI call.

    main() points structlog and the root logger at the sys.stderr of the moment, which under
    capsys is a capture closed after the test; later tests would log into a closed file.
    """
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
