"""Dead-letter replay through the running engine: fix the registry, replay, stored exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from devices.catalog import DeviceType
from firesentry.app import Engine
from firesentry.embedded import Endpoints
from store import registry as reg
from tests.helpers import Publisher, scalar, wait_until
from tests.store.conftest import cli_env as cli_env  # the CLI pointed at the test database
from tests.store.test_devices_cli import run

pytestmark = pytest.mark.e2e

WAIT_S = "15"


@pytest.fixture()
def pub(services: Endpoints) -> Iterator[Publisher]:
    """A device-side publisher."""
    p = Publisher(services, client_id=f"pub-{time.monotonic_ns()}")
    yield p
    p.close()


def dead_letter_of(db: Endpoints, device: str) -> int:
    """Wait for the engine to dead-letter a message of this device; return the row's id."""
    return int(
        wait_until(
            lambda: scalar(
                db.dsn(),
                "SELECT id FROM rejected_messages WHERE device_id = %s AND replay_of IS NULL",
                (device,),
            ),
            15,
            f"a dead letter of {device}",
        )
    )


def readings_of(db: Endpoints, device: str) -> int:
    """How many telemetry rows the device has."""
    return int(
        scalar(
            db.dsn(),
            "SELECT count(*) FROM telemetry t JOIN devices d ON d.num = t.device_num"
            " WHERE d.id = %s",
            (device,),
        )
    )


def test_replay_after_registering_the_device_stores_the_reading_once(
    engine: Engine,
    cli_env: Endpoints,
    prefix: str,
    pub: Publisher,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reading of an unregistered device, replayed after registration, is stored exactly once,
    also when replayed a second time with --again."""
    pub.publish(
        f"{prefix}/em-9/telemetry",
        {"ts": int(time.time() * 1000), "seq": 1, "metrics": {"residual_current_ma": 41.5}},
    )
    dl = dead_letter_of(cli_env, "em-9")
    assert scalar(cli_env.dsn(), "SELECT reason FROM rejected_messages WHERE id = %s", (dl,)) == (
        "unknown_device"
    )
    with psycopg.connect(cli_env.dsn(), autocommit=True) as conn:
        reg.add_device(conn, "em-9", "u1", DeviceType.ELECTRICAL)

    rc, out, _ = run(capsys, "deadletters", "replay", str(dl), "--yes", "--wait-s", WAIT_S)
    assert rc == 0, out
    assert "replayed 1: 1 stored (or already present)" in out
    assert readings_of(cli_env, "em-9") == 1

    rc, out, _ = run(
        capsys, "deadletters", "replay", str(dl), "--again", "--yes", "--wait-s", WAIT_S
    )
    assert rc == 0, out
    assert "replayed 1: 1 stored (or already present)" in out
    assert readings_of(cli_env, "em-9") == 1
    assert (
        scalar(cli_env.dsn(), "SELECT count(*) FROM rejected_messages WHERE replay_of = %s", (dl,))
        == 0
    )


def test_replay_rejected_again_becomes_a_new_dead_letter(
    engine: Engine,
    cli_env: Endpoints,
    prefix: str,
    pub: Publisher,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A replayed message that is still invalid is a new dead letter pointing at its original."""
    pub.publish(f"{prefix}/em-8/telemetry", {"ts": int(time.time() * 1000), "metrics": {}})
    dl = dead_letter_of(cli_env, "em-8")
    rc, out, _ = run(capsys, "deadletters", "replay", "--device", "em-8", "--wait-s", WAIT_S)
    assert rc == 0, out
    new = scalar(cli_env.dsn(), "SELECT id FROM rejected_messages WHERE replay_of = %s", (dl,))
    assert new is not None
    assert (
        "replayed 1: 0 stored (or already present), 1 rejected again (unknown_device 1):"
        f" new dead letters #{new}" in out
    )
