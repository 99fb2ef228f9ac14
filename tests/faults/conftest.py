"""Fault-suite fixtures: the end-to-end ones (a seeded fleet, a webhook receiver, an engine)."""

from tests.e2e.conftest import engine, fleet, receiver

__all__ = ["engine", "fleet", "receiver"]
