"""`firesentry tokens …`, `firesentry db readonly-role` and `firesentry api`."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import threading
from typing import Any

import psycopg

from firesentry.config import Settings
from store.tokens import ROLES

READONLY_PASSWORD_ENV = "FIRESENTRY_READONLY_PASSWORD"


def _lock_s(settings: Settings) -> float:
    return settings.database.migrate_lock_timeout_s


def _dsn(settings: Settings) -> str:
    from firesentry.app import resolve_endpoints
    from store.migrate import migrate

    ep = resolve_endpoints(settings, start=True)
    migrate(ep.migrate_dsn(), settings.storage.backend, lock_timeout_s=_lock_s(settings))
    return ep.dsn()


def _tokens_create(settings: Settings, args: argparse.Namespace) -> int:
    from store import registry as reg
    from store import tokens as store_tokens

    units: list[str] = args.unit or []
    expires = (
        None
        if args.expires_days is None
        else dt.datetime.now(dt.UTC) + dt.timedelta(days=args.expires_days)
    )
    with psycopg.connect(_dsn(settings), autocommit=True) as conn:
        missing = sorted(u for u in units if not reg.unit_exists(conn, u))
        if missing:
            print(f"firesentry: --unit: no unit {', '.join(missing)}", file=sys.stderr)
            return 1
        row, token = store_tokens.create_token(
            conn, args.name or args.role, args.role, units, expires_at=expires
        )
    scope = ", ".join(row.units) if row.units else "all units"
    until = f", expires {row.expires_at:%Y-%m-%d %H:%M %Z}" if row.expires_at else ""
    print(f"token {row.id} ({row.name}, role {row.role}, {scope}{until}):")
    print(token)
    print(
        "It is shown only now (only its SHA-256 is stored). Send it as 'Authorization: Bearer …'."
    )
    return 0


def _tokens_list(settings: Settings, args: argparse.Namespace) -> int:
    from store import tokens as store_tokens

    with psycopg.connect(_dsn(settings), autocommit=True) as conn:
        rows = store_tokens.list_tokens(conn, include_revoked=args.all)
    now = dt.datetime.now(dt.UTC)
    print(f"{'id':>4}  {'name':24} {'role':9} {'units':24} {'token':12} last used")
    for t in rows:
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        if t.revoked_at:
            used += f" (revoked {t.revoked_at:%Y-%m-%d %H:%M})"
        elif t.expires_at and t.expires_at <= now:
            used += f" (expired {t.expires_at:%Y-%m-%d %H:%M})"
        elif t.expires_at:
            used += f" (expires {t.expires_at:%Y-%m-%d %H:%M})"
        units = ",".join(t.units) or "all"
        print(f"{t.id:>4}  {t.name[:24]:24} {t.role:9} {units[:24]:24} {t.hint + '…':12} {used}")
    return 0


def _tokens_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from store import tokens as store_tokens

    with psycopg.connect(_dsn(settings), autocommit=True) as conn:
        if not store_tokens.revoke(conn, args.id):
            print(f"firesentry: no live token {args.id}", file=sys.stderr)
            return 1
    print(f"token {args.id} revoked")
    return 0


def _role_admin_dsn(*dsns: str) -> str:
    """The first of these DSNs whose role may create roles (a superuser, or CREATEROLE)."""
    from store.roles import session_role

    for dsn in dict.fromkeys(dsns):
        with psycopg.connect(dsn, autocommit=True) as conn:
            me = session_role(conn)
        if me.superuser or me.createrole:
            return dsn
    raise PermissionError(
        "neither database.user nor database.migrate_user may create roles (CREATEROLE); run "
        "this with a migrate user that owns the schema and has CREATEROLE, or a superuser"
    )


def _readonly_role(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import embedded_services, resolve_endpoints
    from store.migrate import migrate
    from store.readonly import ensure_readonly_role
    from store.roles import may_take_advisory_locks

    password = os.environ.get(READONLY_PASSWORD_ENV, "")
    if not password:
        print(
            f"firesentry: set {READONLY_PASSWORD_ENV} to the password the role should have",
            file=sys.stderr,
        )
        return 2
    ep = resolve_endpoints(settings, start=True)
    migrate(ep.migrate_dsn(), settings.storage.backend, lock_timeout_s=_lock_s(settings))
    # Embedded: the private cluster's superuser. External: database.user is the app role, so
    # the migrate user (the schema owner, given CREATEROLE), or a superuser as either.
    embedded = embedded_services(settings).endpoints() if settings.embedded.enabled else None
    candidates = ([embedded.dsn()] if embedded else []) + [ep.dsn(), ep.migrate_dsn()]
    try:
        dsn = _role_admin_dsn(*candidates)
    except PermissionError as exc:
        print(f"firesentry: {exc}", file=sys.stderr)
        return 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            done = ensure_readonly_role(conn, args.name, password)
        except ValueError as exc:
            print(f"firesentry: --name: {exc}", file=sys.stderr)
            return 2
        locks = may_take_advisory_locks(conn, args.name)
        info: Any = conn.info
        where = f"{info.host}:{info.port}/{info.dbname}"
    print(f"role {args.name} {done}: SELECT only (no token or password hashes), on {where}")
    print("Point Grafana's PostgreSQL data source at it; sessions are read-only.")
    if locks:
        print(
            f"warning: {args.name} can still take advisory locks (and so hold the migration "
            "lock): only a superuser can revoke them from PUBLIC; see README, Storage, for the SQL"
        )
    return 0


def _serve_api(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    from firesentry.app import resolve_endpoints
    from firesentry.serve import start_api
    from store.migrate import migrate

    ep = resolve_endpoints(settings, start=True)
    migrate(ep.migrate_dsn(), settings.storage.backend, lock_timeout_s=_lock_s(settings))
    server = start_api(settings, ep)
    print(f"firesentry API and console on {server.url}/ (Ctrl-C stops)", flush=True)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 < days <= 3650:
        raise argparse.ArgumentTypeError("give a number of days above 0 and at most 3650")
    return days


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `tokens`, `db` and `api` commands."""
    t = sub.add_parser("tokens", help="API bearer tokens: create, list, revoke")
    tsub = t.add_subparsers(dest="tokens_command", required=True)
    c = tsub.add_parser("create", help="make a token and print it once")
    c.add_argument(
        "--role",
        required=True,
        choices=list(ROLES),
        help="operator, analyst, admin, display: a wall screen's board (read only, no "
        "phone numbers; meant to stay logged in, so give it no expiry and revoke it instead), "
        "inspector: reports and follows hazards in the field, supervisor: also reviews and "
        "closes them",
    )
    c.add_argument(
        "--unit", action="append", metavar="ID", help="limit the token to this unit (repeat)"
    )
    c.add_argument("--name", help="who uses it; recorded as the actor of its actions")
    c.add_argument(
        "--expires-days",
        type=_positive_days,
        metavar="N",
        help="refuse the token N days from now (and end its open streams); default: never",
    )
    c.set_defaults(fn=_tokens_create)
    ls = tsub.add_parser("list", help="tokens (never their values)")
    ls.add_argument("--all", action="store_true", help="include revoked and expired tokens")
    ls.set_defaults(fn=_tokens_list)
    r = tsub.add_parser("revoke", help="revoke a token at once")
    r.add_argument("id", type=int)
    r.set_defaults(fn=_tokens_revoke)

    d = sub.add_parser("db", help="database administration")
    dsub = d.add_subparsers(dest="db_command", required=True)
    ro = dsub.add_parser(
        "readonly-role",
        help=f"create a SELECT-only login role for Grafana (password from ${READONLY_PASSWORD_ENV})",
    )
    ro.add_argument("--name", default="grafana", help="the role's name (default grafana)")
    ro.set_defaults(fn=_readonly_role)

    a = sub.add_parser("api", help="serve the HTTP API and the console alone (no engine)")
    a.set_defaults(fn=_serve_api)
