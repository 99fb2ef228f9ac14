"""Tokens, roles and unit scopes: every endpoint refuses what the caller may not do."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import build_app
from firesentry.cli import main
from firesentry.embedded import Endpoints
from store import tokens as store_tokens
from tests.api.conftest import Seeded, api_options, auth

Client = TestClient[Any, Any]

# (method, path, body) of one call per permission.
CALLS: dict[str, tuple[str, str, dict[str, str] | None]] = {
    "alerts": ("GET", "/api/v1/alerts", None),
    "stream": ("GET", "/api/v1/stream?last_event_id=999999", None),
    "ack": ("POST", "/api/v1/alerts/{em_major}/ack", {}),
    "units": ("GET", "/api/v1/units", None),
    "devices": ("GET", "/api/v1/devices?status=offline", None),
    "telemetry": ("GET", "/api/v1/telemetry?device=u1-em&metric=residual_current_ma", None),
    "export": ("GET", "/api/v1/telemetry.csv?device=u1-em", None),
    "stats": ("GET", "/api/v1/stats/alerts", None),
    "metrics": ("GET", "/metrics", None),
}
ALLOWED = {
    "operator": {"alerts", "stream", "ack", "units", "devices", "telemetry"},
    "analyst": {"alerts", "stream", "telemetry", "export", "stats"},
    "admin": set(CALLS),
    # A wall screen: the board and its stream, nothing else.
    "display": {"alerts", "stream"},
}


async def _call(client: Client, seeded: Seeded, role: str, name: str) -> int:
    method, path, body = CALLS[name]
    path = path.format(**seeded.alerts)
    async with client.request(method, path, headers=auth(seeded.tokens[role]), json=body) as r:
        if r.status == 200 and name == "stream":
            return 200  # do not wait on the open stream
        await r.read()
        return r.status


@pytest.mark.parametrize("role", ["operator", "analyst", "admin", "display"])
async def test_each_role_gets_exactly_its_permissions(
    client: Client, seeded: Seeded, role: str
) -> None:
    """Each role is refused (403) every call outside its permissions and allowed the others."""
    for name in CALLS:
        status = await _call(client, seeded, role, name)
        expected = 200 if name in ALLOWED[role] else 403
        assert status == expected, f"{role} {name}: {status}"


async def test_missing_bad_and_revoked_tokens_are_401(client: Client, seeded: Seeded) -> None:
    """No token, a malformed or unknown one, or a revoked one: 401 with a JSON reason."""
    r = await client.get("/api/v1/alerts")
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in (await r.json())["message"]
    for header in ("Basic abc", "Bearer fst_nope"):
        r = await client.get("/api/v1/alerts", headers={"Authorization": header})
        assert r.status == 401
    token = seeded.tokens["operator"]
    assert (await client.get("/api/v1/me", headers=auth(token))).status == 200
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        row = store_tokens.lookup(conn, token)
        assert row is not None and store_tokens.revoke(conn, row.id)
    r = await client.get("/api/v1/me", headers=auth(token))
    assert r.status == 401 and (await r.json())["message"] == "unknown, revoked or expired token"


async def test_unit_scoped_token_sees_only_its_units(client: Client, seeded: Seeded) -> None:
    """A token limited to u1 lists, reads and acts on u1 only; u2 is 404 (or 403 if named)."""
    h = auth(seeded.tokens["operator_u1"])
    alerts = (await (await client.get("/api/v1/alerts", headers=h)).json())["items"]
    assert {a["unit_id"] for a in alerts} == {"u1"} and len(alerts) == 2
    units = (await (await client.get("/api/v1/units", headers=h)).json())["items"]
    assert [u["id"] for u in units] == ["u1"]
    devices = (await (await client.get("/api/v1/devices", headers=h)).json())["items"]
    assert {d["unit_id"] for d in devices} == {"u1"}
    other = seeded.alerts["wl_warning"]
    assert (await client.get(f"/api/v1/alerts/{other}", headers=h)).status == 404
    assert (await client.post(f"/api/v1/alerts/{other}/ack", headers=h)).status == 404
    assert (await client.get("/api/v1/units/u2", headers=h)).status == 404
    assert (await client.get("/api/v1/alerts?unit=u2", headers=h)).status == 403
    r = await client.post(
        "/api/v1/silences",
        headers=h,
        json={"rule_id": "fire_alarm", "duration_min": 5, "reason": "x"},
    )
    assert r.status == 403
    analyst = auth(seeded.tokens["analyst_u2"])
    r = await client.get(
        "/api/v1/telemetry?device=u1-em&metric=residual_current_ma", headers=analyst
    )
    assert r.status == 404
    stats = (await (await client.get("/api/v1/stats/alerts", headers=analyst)).json())["rows"]
    assert [s["key"] for s in stats] == ["u2"]


async def test_me_describes_the_token(client: Client, seeded: Seeded) -> None:
    """GET /me gives name, role, permissions and units so the console can adapt."""
    me = await (await client.get("/api/v1/me", headers=auth(seeded.tokens["operator_u1"]))).json()
    assert me == {
        "name": "Test operator_u1",
        "role": "operator",
        "permissions": [
            "alerts:act",
            "alerts:read",
            "contacts:read",
            "hazards:act",
            "hazards:read",
            "telemetry:read",
            "units:read",
        ],
        "units": ["u1"],
    }


def _env(monkeypatch: pytest.MonkeyPatch, db: Endpoints) -> None:
    for key, value in {
        "FIRESENTRY_EMBEDDED__ENABLED": "false",
        "FIRESENTRY_DATABASE__HOST": db.db_host,
        "FIRESENTRY_DATABASE__PORT": str(db.db_port),
        "FIRESENTRY_DATABASE__DBNAME": db.db_name,
        "FIRESENTRY_DATABASE__USER": db.db_user,
        "FIRESENTRY_DATABASE__PASSWORD": db.db_password,
        "FIRESENTRY_CONFIG": "",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir("/")


@pytest.mark.usefixtures("cli_logging")
def test_tokens_cli_creates_lists_and_revokes(
    db: Endpoints, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokens create` prints the token once and stores only its hash; list and revoke work."""
    _env(monkeypatch, db)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u1', 'Mall')")
    assert main(["tokens", "create", "--role", "operator", "--unit", "u1", "--name", "Li"]) == 0
    out = capsys.readouterr().out
    token = next(line for line in out.splitlines() if line.startswith("fst_"))
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        row = store_tokens.lookup(conn, token)
        stored = conn.execute("SELECT token_sha256 FROM api_tokens").fetchone()
    assert row is not None and row.units == ("u1",) and row.role == "operator"
    assert stored is not None and token.encode() not in bytes(stored[0])
    assert main(["tokens", "list"]) == 0
    listing = capsys.readouterr().out
    assert "Li" in listing and token not in listing and token[:10] in listing
    assert main(["tokens", "create", "--role", "admin", "--unit", "nope"]) == 1
    assert "no unit nope" in capsys.readouterr().err
    assert main(["tokens", "revoke", str(row.id)]) == 0
    assert main(["tokens", "revoke", str(row.id)]) == 1
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        assert store_tokens.lookup(conn, token) is None


async def test_failed_logins_are_counted_per_address_logged_and_throttled(
    db: Endpoints, seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    """After auth_fail_limit failures in the window an address gets 429 + Retry-After; no reset."""
    opts = api_options(db, auth_fail_limit=5, auth_fail_window_s=60.0)
    guess = "fst_guessed-token-value-0123456789"
    async with (
        TestClient(TestServer(build_app(opts), host="127.0.0.1")) as local,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as far,
    ):
        url = str(local.make_url("/api/v1/alerts"))
        for _ in range(5):
            async with far.get(url, headers=auth(guess)) as r:
                assert r.status == 401
        async with far.get(url, headers=auth(guess)) as r:
            body = await r.json()
            assert r.status == 429 and body["error"] == "too_many_requests", body
            assert 0 < int(r.headers["Retry-After"]) <= 60
        async with far.get(url) as r:  # no token at all is a failure too
            assert r.status == 429
        # A valid token from the throttled address still works (the control room may share a
        # NAT with whoever is guessing), but does not clear the address's failures.
        async with far.get(url, headers=auth(seeded.tokens["operator"])) as r:
            assert r.status == 200
        async with far.get(url, headers=auth(guess)) as r:
            assert r.status == 429
        # Another address has its own count: its first failure is a plain 401.
        assert (await local.get("/api/v1/alerts", headers=auth(seeded.tokens["admin"]))).ok
        assert (await local.get("/api/v1/alerts", headers=auth(guess))).status == 401
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x.get("event") == "api authentication failed"]
    assert {x["address"] for x in failed} == {"127.0.0.1", "127.0.0.2"}
    assert len([x for x in failed if x["address"] == "127.0.0.2"]) == 5
    assert {x["route"] for x in failed} == {"/api/v1/alerts"}
    throttled = [x for x in lines if x.get("event") == "api authentication throttled"]
    assert [x["address"] for x in throttled] == ["127.0.0.2"]
    assert not [x for x in lines if guess in json.dumps(x) or guess[:12] in json.dumps(x)]


@pytest.mark.usefixtures("cli_logging")
def test_tokens_cli_gives_a_token_an_expiry(
    db: Endpoints, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokens create --expires-days N` stores the end, `tokens list` shows it, the API obeys it."""
    _env(monkeypatch, db)
    assert main(["tokens", "create", "--role", "analyst", "--expires-days", "0.5"]) == 0
    out = capsys.readouterr().out
    token = next(line for line in out.splitlines() if line.startswith("fst_"))
    assert ", expires " in out
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        row = store_tokens.lookup(conn, token)
        assert row is not None and row.expires_at is not None
        left = row.expires_at - row.created_at
        assert 11.9 * 3600 < left.total_seconds() < 12.1 * 3600
        conn.execute(
            "UPDATE api_tokens SET created_at = now() - interval '1 day',"
            " expires_at = now() - interval '1 second'"
        )
        assert store_tokens.lookup(conn, token) is None
    assert main(["tokens", "list"]) == 0
    assert token[:10] not in capsys.readouterr().out
    assert main(["tokens", "list", "--all"]) == 0
    assert "(expired " in capsys.readouterr().out
