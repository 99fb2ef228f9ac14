"""Throwaway services leave nothing behind, the database's folder outside theirs included."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from firesentry.embedded import EmbeddedServices

pytestmark = pytest.mark.e2e


def test_destroy_removes_the_folder_and_a_database_kept_outside_it() -> None:
    """Under a 0700 temporary folder (as root) PostgreSQL's cluster lives in /var/tmp; destroy()
    deletes it with the folder, as rmtree of the folder alone did not."""
    root = Path(tempfile.mkdtemp(prefix="firesentry-destroy-"))
    svc = EmbeddedServices(root, durable=False)
    svc.up()
    pg_root = svc.postgres.root
    assert pg_root.exists()
    svc.destroy()
    assert not root.exists()
    assert not pg_root.exists(), f"{pg_root} was left behind"
