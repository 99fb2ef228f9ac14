"""Payloads generated from the MQTT contract, published by a real client among good traffic:
ingest never stalls and every good reading is stored."""

from __future__ import annotations

import itertools
import time

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firesentry.app import Engine
from firesentry.embedded import Endpoints
from tests.faults import drain
from tests.helpers import scalar, wait_until
from tests.unit.test_decode_fuzz import payloads

pytestmark = pytest.mark.e2e
_ts = itertools.count(int(time.time() * 1000) - 120_000)
_published = itertools.count(1)


def control_stored(db: Endpoints) -> int:
    return int(
        scalar(
            db.dsn(),
            "SELECT count(*) FROM telemetry t JOIN devices d ON d.num = t.device_num"
            " WHERE d.id = 'wl-1'",
        )
    )


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fuzz=st.lists(
        st.tuples(
            st.sampled_from(["em-1", "utd-1", "wp-1", "ghost"]),
            st.sampled_from(["telemetry", "event", "status"]),
            payloads,
        ),
        min_size=20,
        max_size=60,
    )
)
def test_generated_payloads_never_stall_ingest(
    engine: Engine,
    db: Endpoints,
    prefix: str,
    fuzz: list[tuple[str, str, bytes]],
) -> None:
    """Whatever the generated messages are, the good readings published between them (on a device
    that gets no generated traffic) are all stored, and nothing is left uncommitted."""
    messages: list[tuple[str, bytes]] = []
    last = 0
    for device, kind, payload in fuzz:
        messages.append((f"{prefix}/{device}/{kind}", payload))
        body = {"ts": next(_ts), "metrics": {"level_m": 2.5}}
        messages.append((f"{prefix}/wl-1/telemetry", msgspec.json.encode(body)))
        last = next(_published)
    drain.publish_all(db, messages)
    wait_until(lambda: control_stored(db) == last, 30, f"{last} good readings stored")
    wait_until(lambda: engine.consumer.lag_s() == 0.0, 30, "nothing left uncommitted")
    assert engine.consumer.alive()
