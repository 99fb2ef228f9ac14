"""Operations endpoints, the OpenAPI document, the console's files and the Grafana role."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import ROUTES, build_app
from api.openapi import openapi_path
from api.state import STATIC_DIR
from firesentry.cli import main
from firesentry.embedded import Endpoints, free_port
from store import alert_plan, health
from store.readonly import ensure_readonly_role
from tests.api.conftest import Seeded, api_options, auth
from tests.api.test_auth import _env

Client = TestClient[Any, Any]


def report(dsn: str, client_id: str = "ingest-a", **changes: Any) -> health.EngineHealth:
    """Write an engine's health row as a running engine would (healthy unless changed)."""
    h = health.EngineHealth(
        client_id=client_id,
        host="test-host",
        pid=os.getpid(),
        started_at=dt.datetime.now(dt.UTC),
        broker_connected=True,
        ingest_alive=True,
        outbox_alive=True,
        ingest_lag_s=0.0,
        committed_messages=12,
        last_batch_at=dt.datetime.now(dt.UTC),
    )
    h = dataclasses.replace(h, **changes)
    with psycopg.connect(dsn, autocommit=True) as conn:
        health.write(conn, h)
    return h


async def readiness(client: Client, token: str) -> tuple[int, dict[str, Any]]:
    """GET /readyz with a token (details need one, of any role): (status code, body)."""
    r = await client.get("/readyz", headers=auth(token))
    return r.status, await r.json()


async def test_healthz_and_readyz_need_no_token(client: Client, seeded: Seeded) -> None:
    """/healthz answers; /readyz is 200 with a fresh, healthy engine and every check ok."""
    assert (await (await client.get("/healthz")).json()) == {"status": "ok", "checks": {}}
    report(seeded.dsn)
    anonymous = await client.get("/readyz")
    assert anonymous.status == 200 and (await anonymous.json())["status"] == "ready"
    status, body = await readiness(client, seeded.tokens["analyst"])
    assert status == 200, body
    assert body["checks"] == {"database": "ok", "broker": "ok", "engine": "ok", "outbox": "ok"}
    (engine,) = body["engines"]
    assert engine["client_id"] == "ingest-a" and engine["status"] == "ok" and engine["fresh"]
    assert engine["committed_messages"] == 12 and engine["pid"] == os.getpid()
    assert body["outbox"] == {"due": 0, "oldest_due_s": 0.0}


async def test_readyz_fails_without_any_engine(client: Client, seeded: Seeded) -> None:
    """The API alone, with no engine ever registered, is not ready and says so."""
    status, body = await readiness(client, seeded.tokens["operator"])
    assert status == 503 and body["status"] == "not_ready"
    assert body["checks"]["engine"] == "none registered" and body["engines"] == []
    assert body["checks"]["database"] == "ok" and body["checks"]["outbox"] == "ok"


async def test_readyz_names_each_engine_problem(client: Client, seeded: Seeded) -> None:
    """A stale engine, a dead ingest or outbox, a lost broker and a long lag each fail readiness."""
    report(seeded.dsn, "ingest-ok")
    report(
        seeded.dsn,
        "ingest-bad",
        broker_connected=False,
        ingest_alive=False,
        outbox_alive=False,
        ingest_lag_s=45.0,
    )
    report(seeded.dsn, "ingest-gone")
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE engine_health SET updated_at = now() - interval '40 seconds'"
            " WHERE client_id = 'ingest-gone'"
        )
    status, body = await readiness(client, seeded.tokens["admin"])
    assert status == 503
    by_id = {e["client_id"]: e for e in body["engines"]}
    assert by_id["ingest-ok"]["status"] == "ok"
    assert by_id["ingest-bad"]["status"] == (
        "broker disconnected, ingest not alive, outbox not alive, ingest lag 45 s (limit 30 s)"
    )
    gone = by_id["ingest-gone"]
    assert not gone["fresh"] and gone["status"].startswith("stale (last report 4")
    assert "ingest-ok" not in body["checks"]["engine"]
    assert "ingest-bad: broker disconnected" in body["checks"]["engine"]
    assert "ingest-gone: stale" in body["checks"]["engine"]


async def test_readyz_fails_when_the_outbox_falls_behind(client: Client, seeded: Seeded) -> None:
    """A notification due for longer than the limit fails the outbox check; one not yet due not."""
    report(seeded.dsn)
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        now = dt.datetime.now(dt.UTC)
        for due in (now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=5)):
            alert_plan.enqueue(conn, None, "webhook", "ops", {"n": 1}, not_before=due)
    status, body = await readiness(client, seeded.tokens["admin"])
    assert status == 503
    assert body["outbox"]["due"] == 1 and 295 < body["outbox"]["oldest_due_s"] < 400
    assert re.fullmatch(
        r"1 due, the oldest waiting 3\d\d s \(limit 120 s\)", body["checks"]["outbox"]
    )
    assert body["checks"]["engine"] == "ok"


async def test_readyz_is_503_when_the_broker_is_down(db: Endpoints, seeded: Seeded) -> None:
    """With nothing listening on the broker's port /readyz says not_ready and why."""
    report(seeded.dsn)
    port = free_port()
    app = build_app(api_options(db, mqtt_port=port))
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/readyz", headers=auth(seeded.tokens["operator"]))
        body = await r.json()
    assert r.status == 503 and body["status"] == "not_ready"
    assert body["checks"]["database"] == "ok" and str(port) in body["checks"]["broker"]
    assert body["checks"]["engine"] == "ok"


async def test_readyz_is_503_when_the_database_is_down(db: Endpoints) -> None:
    """With the database unreachable /readyz is 503 (all but the broker fail), API calls 503."""
    bad = api_options(
        db,
        dsn=db.dsn().replace(f"port={db.db_port}", f"port={free_port()}"),
        pool_timeout_s=0.5,
        probe_timeout_s=1.0,
    )
    async with TestClient(TestServer(build_app(bad))) as client:
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503 and body["checks"] == {
            "database": "fail",
            "broker": "ok",
            "engine": "fail",
            "outbox": "fail",
        }
        assert body["engines"] == [] and body["outbox"] is None
        r = await client.get("/api/v1/alerts", headers=auth("fst_whatever"))
        assert r.status == 503 and (await r.json())["error"] == "unavailable"


async def test_metrics_are_prometheus_text(client: Client, seeded: Seeded) -> None:
    """/metrics (admin) lists the engine's counters and counts API requests."""
    await client.get("/api/v1/alerts", headers=auth(seeded.tokens["admin"]))
    r = await client.get("/metrics", headers=auth(seeded.tokens["admin"]))
    text = await r.text()
    for name in (
        "firesentry_messages_total",
        "firesentry_messages_rejected_total",
        "firesentry_batch_messages_bucket",
        "firesentry_batch_commit_seconds_bucket",
        "firesentry_alerts_opened_total",
        "firesentry_notifications_total",
    ):
        assert f"# TYPE {name.removesuffix('_bucket').removesuffix('_total')}" in text, name
    assert 'firesentry_api_requests_total{route="/api/v1/alerts",status="200"}' in text


async def test_metrics_report_engine_health_from_the_database(
    client: Client, seeded: Seeded
) -> None:
    """The health gauges come from engine_health and notifications, so any API process shows them."""
    report(seeded.dsn, "ingest-m", ingest_lag_s=2.5, outbox_alive=False)
    report(seeded.dsn, "ingest-stale")
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE engine_health SET updated_at = now() - interval '1 minute'"
            " WHERE client_id = 'ingest-stale'"
        )
        alert_plan.enqueue(
            conn,
            None,
            "webhook",
            "ops",
            {"n": 1},
            not_before=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90),
        )
    r = await client.get("/metrics", headers=auth(seeded.tokens["admin"]))
    text = await r.text()
    assert 'firesentry_ingest_lag_seconds{engine="ingest-m"} 2.5' in text
    assert 'firesentry_broker_connected{engine="ingest-m"} 1.0' in text
    assert 'firesentry_worker_alive{engine="ingest-m",worker="ingest"} 1.0' in text
    assert 'firesentry_worker_alive{engine="ingest-m",worker="outbox"} 0.0' in text
    # A stale report says nothing about now: its workers count as not alive.
    assert 'firesentry_worker_alive{engine="ingest-stale",worker="ingest"} 0.0' in text
    assert 'firesentry_broker_connected{engine="ingest-stale"} 0.0' in text
    assert "firesentry_outbox_pending 1.0" in text
    oldest = re.search(r"^firesentry_outbox_oldest_pending_seconds (\S+)$", text, re.M)
    assert oldest and 89 < float(oldest.group(1)) < 200


async def test_metrics_count_notifications_per_channel_and_open_channel_alerts(
    client: Client, seeded: Seeded
) -> None:
    """Per channel and state: how many notifications wait and how old the oldest is; a
    channel alert shows as firesentry_channel_alert 1 (any API process: read from the DB)."""
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM notifications")
        for receiver in ("+8613800000001", "+8613800000002"):
            alert_plan.enqueue(conn, None, "sms", receiver, {"n": 1})
        conn.execute(
            "UPDATE notifications SET state = 'failed', created_at = now() - interval '5 minutes'"
        )
        alert_plan.enqueue(conn, None, "webhook", "ops", {"n": 2})
        conn.execute(
            "INSERT INTO channel_alerts (subject, failing_since, waiting)"
            " VALUES ('sms', now() - interval '4 minutes', 2)"
        )
    text = await (await client.get("/metrics", headers=auth(seeded.tokens["admin"]))).text()
    assert 'firesentry_outbox_rows{channel="sms",state="failed"} 2.0' in text
    assert 'firesentry_outbox_rows{channel="webhook",state="pending"} 1.0' in text
    oldest = re.search(
        r'^firesentry_outbox_rows_oldest_seconds\{channel="sms",state="failed"\} (\S+)$',
        text,
        re.M,
    )
    assert oldest and 290 < float(oldest.group(1)) < 400
    assert 'firesentry_channel_alert{channel="sms"} 1.0' in text


async def test_openapi_document_matches_the_routes(client: Client) -> None:
    """Every route is in /api/v1/openapi.json with its parameters, roles and schemas."""
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(openapi_path(r.path), r.method) for r in ROUTES}
    alerts = doc["paths"]["/api/v1/alerts"]["get"]
    params = {p["name"] for p in alerts["parameters"]}
    assert {
        "state",
        "severity",
        "unit",
        "district",
        "device_type",
        "from",
        "to",
        "limit",
        "cursor",
    } <= params
    assert "operator" in alerts["description"] and alerts["security"] == [{"bearer": []}]
    close = doc["paths"]["/api/v1/alerts/{id}/close"]["post"]
    ref = close["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]
    for path in doc["paths"].values():
        for op in path.values():
            for resp in op["responses"].values():
                for media in resp.get("content", {}).values():
                    for v in media.values():
                        if isinstance(v, dict) and "$ref" in v:
                            assert v["$ref"].rsplit("/", 1)[1] in doc["components"]["schemas"]


async def test_console_is_served_with_a_strict_policy(client: Client) -> None:
    """The console's files come from this server only: a CSP forbids anything else."""
    r = await client.get("/")
    assert r.status == 200 and "<title>" in await r.text()
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    for name in ("app.js", "chart.js", "i18n.js", "style.css", "icons/flame.svg"):
        assert (await client.get(f"/static/{name}")).status == 200


def test_console_files_load_nothing_from_elsewhere() -> None:
    """No CDN, no external URL in any console file (SVG namespaces aside)."""
    for path in Path(STATIC_DIR).rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            urls = re.findall(r"https?://[^\s\"')]+", text)
            assert all(u.startswith("http://www.w3.org/") for u in urls), (path, urls)


def test_readonly_role_reads_but_cannot_write_or_see_secrets(seeded: Seeded, db: Endpoints) -> None:
    """The Grafana role selects data, cannot write, and cannot read token or password hashes."""
    name = f"grafana_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        assert ensure_readonly_role(conn, name, "s3cret-pass") == "created"
        assert ensure_readonly_role(conn, name, "s3cret-pass") == "updated"
    dsn = psycopg.conninfo.make_conninfo(seeded.dsn, user=name, password="s3cret-pass")
    try:
        with psycopg.connect(dsn, autocommit=True) as ro:
            assert ro.execute("SELECT count(*) FROM alerts").fetchone() == (4,)
            assert ro.execute("SELECT count(*) FROM device_liveness").fetchone() == (3,)
            assert ro.execute("SELECT count(*) FROM telemetry").fetchone() == (180,)
            assert ro.execute("SELECT count(id) FROM devices").fetchone() == (3,)
            for stmt in (
                "SELECT password_hash FROM devices",
                "SELECT * FROM api_tokens",
                "DELETE FROM alerts",
                "CREATE TABLE x (a int)",
            ):
                with pytest.raises(psycopg.Error):
                    ro.execute(stmt)
    finally:
        with psycopg.connect(seeded.dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


@pytest.mark.usefixtures("cli_logging")
def test_readonly_role_cli_takes_the_password_from_the_environment(
    db: Endpoints, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`db readonly-role` refuses without FIRESENTRY_READONLY_PASSWORD and creates the role with it."""
    _env(monkeypatch, db)
    monkeypatch.delenv("FIRESENTRY_READONLY_PASSWORD", raising=False)
    assert main(["db", "readonly-role", "--name", "grafana_cli"]) == 2
    assert "FIRESENTRY_READONLY_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("FIRESENTRY_READONLY_PASSWORD", "pw-from-env")
    assert main(["db", "readonly-role", "--name", "Bad-Name"]) == 2
    try:
        assert main(["db", "readonly-role", "--name", "grafana_cli"]) == 0
        assert "role grafana_cli created" in capsys.readouterr().out
    finally:
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            conn.execute('DROP OWNED BY "grafana_cli"')
            conn.execute('DROP ROLE IF EXISTS "grafana_cli"')
