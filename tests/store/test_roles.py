"""Least privilege in the database: owner and app roles, advisory locks, the migration lock's timeout."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import stat
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import structlog
from structlog.testing import capture_logs

from firesentry.app import Engine
from firesentry.cli import main
from firesentry.embedded import EmbeddedServices, Endpoints
from simulators.services.webhook import WebhookReceiver
from store import migrate as store_migrate
from store import roles
from store.migrate import migrate
from store.partitions import PartitionManager
from store.readonly import ensure_readonly_role
from tests.e2e import test_slice
from tests.e2e.conftest import engine, fleet, receiver
from tests.e2e.test_slice import pub
from tests.helpers import Publisher, scalar

LOCK_KEY = 0x66697265  # store.migrate's migration lock
# Tests whose `db` (and so the engine, the fixtures and the checks) log in as the app role.
APP_ROLE_TESTS = {"test_the_vertical_slice_works_as_the_app_role"}
__all__ = ["engine", "fleet", "pub", "receiver"]


@pytest.fixture()
def db(db: Endpoints, request: pytest.FixtureRequest) -> Endpoints:
    """The test database; for the tests in APP_ROLE_TESTS as the app role would see it."""
    return db.as_app() if request.node.name in APP_ROLE_TESTS else db


@pytest.fixture()
def login_role(db: Endpoints) -> Iterator[tuple[str, str]]:
    """A LOGIN role of this test only (no privileges of its own), dropped afterwards."""
    name, password = f"t_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        roles.ensure_login_role(conn, name, password)
    yield name, password
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')


@pytest.fixture()
def empty_database(services: Endpoints) -> Iterator[Endpoints]:
    """A database of this test only with nothing migrated."""
    name = f"fs_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(services.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield dataclasses.replace(services, db_name=name)
    with psycopg.connect(services.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def as_role(ep: Endpoints, user: str, password: str, app: str = "pytest") -> str:
    """A DSN for the same database logged in as another role."""
    return psycopg.conninfo.make_conninfo(
        ep.dsn(), user=user, password=password, application_name=app
    )


def refused(conn: psycopg.Connection[object], stmt: str) -> bool:
    """Run a statement; tell whether PostgreSQL refused it for lack of privilege."""
    try:
        conn.execute(stmt)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_up_keeps_owner_and_app_credentials_in_state(
    embedded: EmbeddedServices, services: Endpoints
) -> None:
    """`up` made a schema owner and an app role, neither a superuser, with passwords in state.json (0600)."""
    state = json.loads(embedded.state_file.read_text())
    assert stat.S_IMODE(embedded.state_file.stat().st_mode) == 0o600
    assert (state["migrate_user"], state["app_user"]) == (roles.OWNER_ROLE, roles.APP_ROLE)
    assert state["migrate_password"] and state["app_password"]
    assert state["migrate_password"] != state["app_password"] != state["db_password"]
    for dsn, name in (
        (services.migrate_dsn(), roles.OWNER_ROLE),
        (services.app_dsn(), roles.APP_ROLE),
    ):
        with psycopg.connect(dsn) as conn:
            me = roles.session_role(conn)
            assert me == roles.SessionRole(name, superuser=False, createrole=False)
    with psycopg.connect(services.dsn()) as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        assert owners == [(roles.OWNER_ROLE,)]
        assert roles.schema_owner(conn) == roles.OWNER_ROLE


def test_endpoints_fall_back_to_the_one_configured_user() -> None:
    """Without a migrate or app user, every DSN logs in as database.user (an external database)."""
    ep = Endpoints("h", 1883, "db.internal", 5432, "fs", "fsuser", "pw")
    for dsn in (ep.dsn(), ep.migrate_dsn(), ep.app_dsn(), ep.as_app().dsn()):
        assert psycopg.conninfo.conninfo_to_dict(dsn)["user"] == "fsuser"
    split = dataclasses.replace(ep, migrate_user="owner", migrate_password="opw")
    params = psycopg.conninfo.conninfo_to_dict(split.migrate_dsn())
    assert (params["user"], params["password"]) == ("owner", "opw")
    assert psycopg.conninfo.conninfo_to_dict(split.dsn())["user"] == "fsuser"


def test_the_app_role_cannot_change_the_schema(db: Endpoints) -> None:
    """As the app role, DDL, TRUNCATE, rewriting history and writing schema_migrations are refused."""
    with psycopg.connect(db.app_dsn(), autocommit=True) as conn:
        for stmt in (
            "CREATE TABLE x (a int)",
            "DROP TABLE telemetry",
            "DROP TABLE api_tokens",
            "ALTER TABLE alerts ADD COLUMN x int",
            "ALTER TABLE telemetry OWNER TO CURRENT_USER",
            "TRUNCATE alerts",
            "DELETE FROM telemetry",
            "UPDATE events SET text = ''",
            "DELETE FROM alert_events",
            "DELETE FROM unit_grade_changes",
            "UPDATE unit_grade_changes SET to_grade = 'blue'",
            "INSERT INTO schema_migrations (version, name) VALUES (9999, 'x')",
            "UPDATE metrics SET unit = 'x'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "DROP FUNCTION firesentry_drop_partition(text, date)",
            "CREATE TRIGGER t BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION"
            " alert_events_number()",
            "CREATE ROLE x",
            "CREATE DATABASE x",
        ):
            assert refused(conn, stmt), stmt


def test_the_app_role_does_what_the_engine_needs(db: Endpoints) -> None:
    """As the app role: rows, temp tables, advisory locks, and partitions only through the functions."""
    today = dt.datetime.now(dt.UTC).date()
    old = today - dt.timedelta(days=30)
    with psycopg.connect(db.app_dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO units (id, name) VALUES ('u', 'U')")
        conn.execute("INSERT INTO devices (id, unit_id, type) VALUES ('d', 'u', 'water_level')")
        conn.execute("CREATE TEMP TABLE stage (a int)")
        conn.execute("SELECT pg_advisory_xact_lock(1718186597, 6)")
        pm = PartitionManager()
        pm.load(conn)
        pm.ensure(conn, {old, today})
        conn.execute(
            "INSERT INTO telemetry VALUES (%s, 1, 14, 1.0)",
            (dt.datetime.combine(today, dt.time(12), dt.UTC),),
        )
        child = f"telemetry_p{today:%Y%m%d}"
        # A partition has its parent's privileges: no DELETE behind telemetry's back.
        assert refused(conn, f"DELETE FROM {child}")  # noqa: S608 (a partition name)
        assert refused(conn, f"DROP TABLE {child}")
    with psycopg.connect(db.app_dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT firesentry_create_partition('alerts', current_date)")
        keep = conn.execute(
            "SELECT firesentry_drop_partition('telemetry', %s)", (today,)
        ).fetchone()
        assert keep == (False,)  # recent data is never dropped, whoever asks
        assert pm.drop_expired(conn, today, keep_days=10) == [
            f"events_p{old:%Y%m%d}",
            f"telemetry_p{old:%Y%m%d}",
        ]
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (1,)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = %s", (child,)
        ).fetchone()
        assert owner == (roles.OWNER_ROLE,)


def test_the_readonly_role_cannot_take_advisory_locks(db: Endpoints) -> None:
    """The Grafana role is refused every advisory-lock function, so it cannot hold the migration lock."""
    name = f"grafana_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        ensure_readonly_role(conn, name, "ro-pass")
    try:
        with psycopg.connect(as_role(db, name, "ro-pass"), autocommit=True) as ro:
            assert ro.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
            for fn in roles.ADVISORY_LOCK_FUNCTIONS:
                args = (LOCK_KEY,) if fn.endswith("(bigint)") else (LOCK_KEY, 0)
                call = f"SELECT {fn.split('(')[0]}({', '.join(['%s'] * len(args))})"
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    ro.execute(call, args)
    finally:
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


def test_the_readonly_role_reads_tables_the_owner_adds_later(db: Endpoints) -> None:
    """A table a later migration creates (as the owner) is readable by Grafana and usable by the app."""
    name = f"grafana_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        ensure_readonly_role(conn, name, "ro-pass")
    try:
        with psycopg.connect(db.migrate_dsn(), autocommit=True) as owner:
            owner.execute("CREATE TABLE later_table (a int)")
            owner.execute("INSERT INTO later_table VALUES (1)")
        with psycopg.connect(as_role(db, name, "ro-pass"), autocommit=True) as ro:
            assert ro.execute("SELECT a FROM later_table").fetchone() == (1,)
            assert refused(ro, "SELECT * FROM api_tokens")
        with psycopg.connect(db.app_dsn(), autocommit=True) as app:
            app.execute("INSERT INTO later_table VALUES (2)")  # and the engine may use it
    finally:
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


@pytest.mark.usefixtures("cli_logging")
def test_migrate_gives_up_on_a_held_lock_naming_the_holder(
    cli_env: Endpoints,
    empty_database: Endpoints,
    login_role: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With another role holding the migration lock, `migrate` fails after the timeout, naming it."""
    monkeypatch.setenv("FIRESENTRY_DATABASE__DBNAME", empty_database.db_name)
    monkeypatch.setenv("FIRESENTRY_DATABASE__MIGRATE_LOCK_TIMEOUT_S", "0.5")
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=20s")  # before the fix it waited forever
    user, password = login_role
    with psycopg.connect(as_role(empty_database, user, password, "lock-holder-test")) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        pid = holder.info.backend_pid
        assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert f"pid {pid} (user {user}, application 'lock-holder-test'" in err, err
    assert "gave up after 0.5 s" in err and f"pg_terminate_backend({pid})" in err
    assert scalar(empty_database.dsn(), "SELECT to_regclass('alerts')") is None


@pytest.mark.usefixtures("cli_logging")
def test_commands_on_a_current_schema_do_not_wait_for_the_lock(
    cli_env: Endpoints,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tokens list`, `devices list` and `migrate` answer at once while someone holds the lock."""
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=20s")  # before the fix they blocked
    holding = psycopg.conninfo.make_conninfo(cli_env.app_dsn(), application_name="lock-holder")
    with psycopg.connect(holding) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert main(["tokens", "list"]) == 0
        assert main(["devices", "list"]) == 0
        assert main(["migrate"]) == 0
    assert "schema is up to date" in capsys.readouterr().out


def test_a_superuser_migrates_as_the_schema_owner(
    db: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrations run by a superuser create objects owned by the schema owner, with a warning."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("DROP FUNCTION firesentry_create_partition(text, date)")
        conn.execute("DROP FUNCTION firesentry_drop_partition(text, date)")
        conn.execute("DELETE FROM schema_migrations WHERE version = 11")
    with capture_logs() as logs:
        # A logger cached by an earlier test would bypass the capture: take a fresh one.
        monkeypatch.setattr(store_migrate, "log", structlog.get_logger("firesentry.migrate"))
        assert migrate(db.dsn()) == ["0011_least_privilege.native"]
    assert any("superuser" in e["event"] for e in logs if e["log_level"] == "warning")
    owner = scalar(
        db.dsn(),
        "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'firesentry_drop_partition'",
    )
    assert owner == roles.OWNER_ROLE


def test_the_app_role_cannot_apply_pending_migrations(db: Endpoints) -> None:
    """Connected as the app role, a pending migration fails with what to run instead."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("DROP FUNCTION firesentry_create_partition(text, date)")
        conn.execute("DROP FUNCTION firesentry_drop_partition(text, date)")
        conn.execute("DELETE FROM schema_migrations WHERE version = 11")
    with pytest.raises(store_migrate.MigrationError, match="run `firesentry migrate`"):
        migrate(db.app_dsn())
    assert scalar(db.dsn(), "SELECT count(*) FROM schema_migrations WHERE version = 11") == 0


def test_objects_a_superuser_made_are_handed_to_the_owner(db: Endpoints) -> None:
    """A schema migrated before the owner role existed is given to it (the `up` upgrade path)."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE legacy (id bigint GENERATED ALWAYS AS IDENTITY, a int)")
        conn.execute("CREATE SEQUENCE legacy_seq")
        conn.execute("CREATE VIEW legacy_view AS SELECT a FROM legacy")
        conn.execute("CREATE FUNCTION legacy_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        changed = roles.transfer_ownership(conn, roles.OWNER_ROLE)
        assert sorted(changed) == ["legacy", "legacy_fn()", "legacy_seq", "legacy_view"]
        assert roles.transfer_ownership(conn, roles.OWNER_ROLE) == []
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace"
        ).fetchall()
        assert owners == [(roles.OWNER_ROLE,)]


@pytest.mark.e2e
def test_the_vertical_slice_works_as_the_app_role(
    engine: Engine, db: Endpoints, prefix: str, receiver: WebhookReceiver, pub: Publisher
) -> None:
    """The slice test (publish → store → alert → signed webhook) passes with the engine as the app role."""
    assert psycopg.conninfo.conninfo_to_dict(engine.dsn)["user"] == roles.APP_ROLE
    test_slice.test_reading_over_threshold_is_stored_alerted_and_posted(
        engine, db, prefix, receiver, pub
    )


@pytest.mark.usefixtures("cli_logging")
def test_the_migrate_command_runs_as_the_owner_and_grants_the_app_role(
    db: Endpoints, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`firesentry migrate` applies what is pending as the schema owner and re-grants the app role."""
    monkeypatch.setattr("firesentry.app.resolve_endpoints", lambda settings, start=False: db)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        conn.execute("DROP FUNCTION firesentry_create_partition(text, date)")
        conn.execute("DROP FUNCTION firesentry_drop_partition(text, date)")
        conn.execute("DELETE FROM schema_migrations WHERE version = 11")
        conn.execute(f"REVOKE ALL ON alerts FROM {roles.APP_ROLE}")
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "applied 0011_least_privilege.native" in out
    assert f"role {roles.APP_ROLE}: reads and writes rows" in out and "advisory" not in out
    owner = scalar(
        db.dsn(),
        "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'firesentry_drop_partition'",
    )
    assert owner == roles.OWNER_ROLE
    with psycopg.connect(db.app_dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
        assert conn.execute(
            "SELECT firesentry_drop_partition('events', '2000-01-01')"
        ).fetchone() == (False,)


@pytest.mark.usefixtures("cli_logging")
def test_readonly_role_needs_a_role_that_may_create_roles(
    cli_env: Endpoints, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`db readonly-role` run with only the app role's login says which role it needs."""
    app = cli_env.as_app()
    monkeypatch.setenv("FIRESENTRY_DATABASE__USER", app.db_user)
    monkeypatch.setenv("FIRESENTRY_DATABASE__PASSWORD", app.db_password)
    monkeypatch.setenv("FIRESENTRY_READONLY_PASSWORD", "ro-pass")
    assert main(["db", "readonly-role", "--name", f"grafana_{uuid.uuid4().hex[:8]}"]) == 1
    assert "may create roles (CREATEROLE)" in capsys.readouterr().err
