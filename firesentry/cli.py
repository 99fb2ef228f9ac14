"""The `firesentry` command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from devices.catalog import DeviceType
from devices.records import COLUMNS, ContactRecord, DeviceRecord, UnitRecord
from firesentry import (
    cli_alerts,
    cli_api,
    cli_bench,
    cli_deadletters,
    cli_gateway,
    cli_grades,
    cli_hazards,
    cli_rules,
    cli_simulate,
)
from firesentry.config import ConfigError, Settings, load_settings
from firesentry.logs import configure_logging

MAX_ERRORS_SHOWN = 50


def _settings(path: str | None) -> Settings:
    if path is None:
        env = os.environ.get("FIRESENTRY_CONFIG")
        if env:
            path = env
        elif Path("config.yaml").exists():
            path = "config.yaml"
    return load_settings(path)


def _cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import embedded_services

    if not settings.embedded.enabled:
        print("embedded services are disabled in the configuration (embedded.enabled: false)")
        return 2
    ep = embedded_services(settings).up()
    print(f"mosquitto  127.0.0.1:{ep.mqtt_port}")
    print(f"postgresql 127.0.0.1:{ep.db_port} database {ep.db_name} user {ep.db_user}")
    print(f"state in {settings.embedded.dir.resolve()}/state.json")
    return 0


def _cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import embedded_services

    svc = embedded_services(settings)
    if args.purge:
        svc.destroy()
        print("embedded services stopped and their data deleted")
        return 0
    svc.down()
    print("embedded services stopped (data kept)")
    return 0


def _cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import embedded_services

    for name, line in embedded_services(settings).status().items():
        print(f"{name:11} {line}")
    return 0


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import resolve_endpoints
    from store import roles
    from store.migrate import MigrationError, migrate

    ep = resolve_endpoints(settings, start=True)
    try:
        # As the schema owner (the migrate user; the database user when none is configured).
        applied = migrate(
            ep.migrate_dsn(), settings.storage.backend, lock_timeout_s=_lock_s(settings)
        )
    except MigrationError as exc:  # the lock held too long; a role that may not migrate
        print(f"firesentry: {exc}", file=sys.stderr)
        return 1
    print("\n".join(f"applied {a}" for a in applied) or "schema is up to date")
    app, owner = ep.app_user or ep.db_user, ep.migrate_user or ep.db_user
    if app != owner:
        # The engine's role gets what it needs on every object, now and later (idempotent).
        with psycopg.connect(ep.migrate_dsn(), autocommit=True) as conn:
            roles.grant_app(conn, app)
            # Only a superuser can take advisory locks from PUBLIC (`up` does, embedded).
            if roles.may_take_advisory_locks(conn, "public"):
                roles.restrict_advisory_locks(conn, [owner, app])
            still_open = roles.may_take_advisory_locks(conn, "public")
        print(f"role {app}: reads and writes rows, no DDL; the schema belongs to {owner}")
        if still_open:
            print(
                "  every role may still take advisory locks (and hold the migration lock); "
                "only a superuser can revoke that: see README, Storage, for the SQL"
            )
    return 0


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import resolve_endpoints
    from firesentry.broker import ensure_events_account
    from firesentry.serve import serve
    from store.migrate import migrate

    ep = resolve_endpoints(settings, start=True)
    migrate(ep.migrate_dsn(), settings.storage.backend, lock_timeout_s=_lock_s(settings))
    synced = ensure_events_account(settings)
    if synced is not None:
        print(f"broker sync: added ingest's events account; broker {synced.action}")
    return serve(settings, ep)  # the engine, and the API beside it when api.enabled


def _database(settings: Settings) -> str:
    """The migrated database's DSN (starting embedded services if they are enabled)."""
    from firesentry.app import resolve_endpoints
    from store.migrate import migrate

    ep = resolve_endpoints(settings, start=True)
    migrate(ep.migrate_dsn(), settings.storage.backend, lock_timeout_s=_lock_s(settings))
    return ep.dsn()


def _lock_s(settings: Settings) -> float:
    """How long a migration waits for another session's lock (database.migrate_lock_timeout_s)."""
    return settings.database.migrate_lock_timeout_s


def _fmt_time(t: dt.datetime | None) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


def _cmd_devices_import(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.registry import ImportFailed, import_files

    dsn = _database(settings)
    files = [Path(args.units), Path(args.devices)] + (
        [Path(args.contacts)] if args.contacts else []
    )
    t0 = time.monotonic()
    try:
        res = import_files(dsn, *files, credentials_out=Path(args.credentials_out))
    except ImportFailed as exc:
        n = len(exc.errors)
        print(f"firesentry: nothing imported; {n} problem{'s' * (n != 1)}:", file=sys.stderr)
        for e in exc.errors[:MAX_ERRORS_SHOWN]:
            print(f"  {e}", file=sys.stderr)
        if n > MAX_ERRORS_SHOWN:
            print(f"  ... and {n - MAX_ERRORS_SHOWN} more", file=sys.stderr)
        return 1
    took = time.monotonic() - t0
    print(f"imported {', '.join(str(f) for f in files)} in {took:.1f} s")
    for name, u in (("units", res.units), ("devices", res.devices)):
        print(f"  {name:9} {u.inserted} new, {u.updated} updated, {u.unchanged} unchanged")
    if args.contacts:
        print(f"  contacts  {res.contacts} (replacing those of the units and districts named)")
    if res.credentials_path is not None:
        print(
            f"  {res.new_credentials} new device password(s) written to {res.credentials_path} "
            "(mode 0600; only their hashes are stored)"
        )
        print("  run `firesentry broker sync` so that the broker accepts them")
    return 0


def _parse_attrs(pairs: list[str]) -> dict[str, Any] | str:
    """key=value pairs; a value that is JSON (3.0, true, "x") is taken as such, else as text."""
    attrs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            return f"--attr {pair!r}: expected key=value"
        try:
            attrs[key.strip()] = json.loads(value)
        except ValueError:
            attrs[key.strip()] = value
    return attrs


_OPTION_OF = {
    "id": "--id",
    "unit_id": "--unit",
    "type": "--type",
    "model": "--model",
    "location": "--location",
    "attributes": "--attr",
    "heartbeat_s": "--heartbeat-s",
}


def _cmd_devices_add(settings: Settings, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from devices.credentials import mosquitto_hash, new_password
    from devices.records import DeviceRecord
    from store import registry as reg

    attrs = _parse_attrs(args.attr or [])
    if isinstance(attrs, str):
        print(f"firesentry: {attrs}", file=sys.stderr)
        return 2
    try:
        rec = DeviceRecord(
            id=args.id,
            unit_id=args.unit,
            type=args.type,
            model=args.model,
            location=args.location,
            attributes=attrs,
            heartbeat_s=args.heartbeat_s,
        )
    except ValidationError as exc:
        for err in exc.errors():
            opt = _OPTION_OF.get(str(err["loc"][0]), "") if err["loc"] else ""
            print(f"firesentry: {opt}: {err['msg']}", file=sys.stderr)
        return 2
    password = new_password()
    with psycopg.connect(_database(settings)) as conn:
        if not reg.unit_exists(conn, rec.unit_id):
            print(f"firesentry: --unit: no unit {rec.unit_id!r}; import it first", file=sys.stderr)
            return 1
        num = reg.create_device(
            conn,
            rec.id,
            rec.unit_id,
            rec.type,
            password_hash=mosquitto_hash(password),
            model=rec.model,
            location=rec.location,
            attributes=rec.attributes,
            heartbeat_s=rec.heartbeat_s,
        )
        if num is None:
            print(
                f"firesentry: --id: device {rec.id!r} exists; `devices passwd` gives it a new "
                "password, `devices import` updates it",
                file=sys.stderr,
            )
            return 1
    print(f"added device {rec.id} ({rec.type}) at unit {rec.unit_id}")
    print(f"mqtt username: {rec.id}")
    print(f"mqtt password: {password}")
    print("The password is shown only now (only its hash is stored). Run `firesentry broker sync`.")
    return 0


def _cmd_devices_passwd(settings: Settings, args: argparse.Namespace) -> int:
    from devices.credentials import mosquitto_hash, new_password
    from store import registry as reg

    password = new_password()
    with psycopg.connect(_database(settings)) as conn:
        if not reg.set_password_hash(conn, args.id, mosquitto_hash(password)):
            print(f"firesentry: no device {args.id!r}", file=sys.stderr)
            return 1
    print(f"mqtt username: {args.id}")
    print(f"mqtt password: {password}")
    print("The password is shown only now. Run `firesentry broker sync` to replace the old one.")
    return 0


def _cmd_devices_list(settings: Settings, args: argparse.Namespace) -> int:
    from store import registry as reg

    with psycopg.connect(_database(settings), autocommit=True) as conn:
        devices = reg.list_devices(conn, unit_id=args.unit, status=args.status)
    rows = [("id", "unit", "type", "status", "last_seen")]
    rows += [(d.id, d.unit_id, d.type, d.status, _fmt_time(d.last_seen)) for d in devices]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
    return 0


def _cmd_devices_show(settings: Settings, args: argparse.Namespace) -> int:
    from store import registry as reg

    with psycopg.connect(_database(settings), autocommit=True) as conn:
        d = reg.get_device(conn, args.id)
    if d is None:
        print(f"firesentry: no device {args.id!r}", file=sys.stderr)
        return 1
    reported = "- (no status message)"
    if d.status_at is not None:
        reported = f"{d.reported_status} at {_fmt_time(d.status_at)} (status topic)"
    fields = [
        ("id", d.id),
        ("unit", f"{d.unit_id} ({d.unit_name})"),
        ("type", d.type),
        ("model", d.model or "-"),
        ("location", d.location or "-"),
        ("heartbeat_s", str(d.heartbeat_s)),
        ("status", f"{d.status} (offline after 3 x {d.heartbeat_s} s of silence)"),
        ("reported", reported),
        ("last_seen", _fmt_time(d.last_seen)),
        ("password", "set" if d.has_password else "none (`firesentry devices passwd`)"),
        ("num", str(d.num)),
        ("created_at", _fmt_time(d.created_at)),
    ]
    attrs = [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(d.attributes.items())]
    fields += [("attributes", a) for a in attrs] or [("attributes", "-")]
    for i, (k, v) in enumerate(fields):
        label = "" if k == "attributes" and i and fields[i - 1][0] == k else k
        print(f"{label:12} {v}")
    return 0


def _cmd_broker_sync(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.broker import BrokerSyncError, sync

    try:
        out = Path(args.out) if args.out else None
        res = sync(settings, out, args.worker or (), args.drop_worker or ())
    except BrokerSyncError as exc:
        print(f"firesentry: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote passwd, acl and auth.conf to {res.dir}: {res.devices} device(s) + {res.ingest_user}"
    )
    if res.without_password:
        print(f"  left out {res.without_password} device(s) without a password (`devices passwd`)")
    if args.out:
        print(f"  include {res.dir / 'auth.conf'} in your mosquitto.conf, then restart the broker")
        if not settings.mqtt.username:
            print(
                f"  ingest's account: FIRESENTRY_MQTT__USERNAME={res.ingest_user}, "
                f"FIRESENTRY_MQTT__PASSWORD=<contents of {res.dir / 'ingest.secret'}>"
            )
    elif res.action == "written":
        print("  the private broker is not running; `firesentry up` starts it with auth on")
    else:
        print(f"  private broker {res.action}; `firesentry run` logs in as {res.ingest_user}")
    for name in res.workers:
        print(
            f"  ingest worker account {name}: FIRESENTRY_MQTT__USERNAME={name}, "
            f"FIRESENTRY_MQTT__PASSWORD=<contents of {res.dir / (name + '.secret')}>"
        )
    for name in args.drop_worker or ():
        print(
            f"  dropped ingest worker account {name}: messages already queued in its sessions "
            "stay there until they expire; drop a worker only after it has drained"
        )
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.demo import run_demo

    return run_demo(settings, args.duration)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the firesentry command."""
    p = argparse.ArgumentParser(prog="firesentry", description=__doc__)
    p.add_argument("--config", help="config file (default: $FIRESENTRY_CONFIG or ./config.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the private Mosquitto and PostgreSQL").set_defaults(fn=_cmd_up)
    down = sub.add_parser("down", help="stop them (data kept)")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete their data: the folder, and the database's where it lives outside it",
    )
    down.set_defaults(fn=_cmd_down)
    sub.add_parser("status", help="show whether they run").set_defaults(fn=_cmd_status)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(
        fn=_cmd_migrate
    )
    sub.add_parser("run", help="run the engine until SIGTERM").set_defaults(fn=_cmd_run)
    cli_rules.register(sub)
    cli_alerts.register(sub)
    cli_simulate.register(sub)
    cli_api.register(sub)
    cli_bench.register(sub)
    cli_deadletters.register(sub)
    cli_grades.register(sub)
    cli_hazards.register(sub)
    cli_gateway.register(sub)
    demo = sub.add_parser("demo", help="services + seeded fleet + engine + simulator + receiver")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(fn=_cmd_demo)

    devices = sub.add_parser("devices", help="the registry: units, devices, contacts")
    dsub = devices.add_subparsers(dest="devices_command", required=True)
    imp = dsub.add_parser("import", help="upsert units, devices (and contacts) from CSV files")
    imp.add_argument("units", help="units CSV: " + ",".join(COLUMNS[UnitRecord]))
    imp.add_argument("devices", help="devices CSV: " + ",".join(COLUMNS[DeviceRecord]))
    imp.add_argument(
        "contacts", nargs="?", help="contacts CSV: " + ",".join(COLUMNS[ContactRecord])
    )
    imp.add_argument(
        "--credentials-out",
        default="credentials.csv",
        help="where new devices' passwords go (mode 0600; must not exist)",
    )
    imp.set_defaults(fn=_cmd_devices_import)
    add = dsub.add_parser("add", help="register one device and print its MQTT password")
    add.add_argument("--id", required=True, help="device id, also its MQTT username")
    add.add_argument("--unit", required=True, help="id of a registered unit")
    add.add_argument("--type", required=True, choices=[t.value for t in DeviceType])
    add.add_argument("--model", default="")
    add.add_argument("--location", default="")
    add.add_argument("--heartbeat-s", type=int, default=60, help="offline after 3 missed")
    add.add_argument(
        "--attr",
        action="append",
        metavar="KEY=VALUE",
        help="attribute (repeat), e.g. tank_depth_m=3",
    )
    add.set_defaults(fn=_cmd_devices_add)
    ls = dsub.add_parser("list", help="devices with their computed status")
    ls.add_argument("--unit", help="only this unit's devices")
    ls.add_argument("--status", choices=["online", "offline", "unknown"])
    ls.set_defaults(fn=_cmd_devices_list)
    show = dsub.add_parser("show", help="every field of one device")
    show.add_argument("id")
    show.set_defaults(fn=_cmd_devices_show)
    pw = dsub.add_parser("passwd", help="give a device a new MQTT password and print it")
    pw.add_argument("id")
    pw.set_defaults(fn=_cmd_devices_passwd)

    broker = sub.add_parser("broker", help="the MQTT broker's accounts and ACL")
    bsub = broker.add_subparsers(dest="broker_command", required=True)
    bs = bsub.add_parser(
        "sync", help="write password and ACL files from the registry; restart the private broker"
    )
    bs.add_argument("--out", help="write the files here for an external broker instead")
    bs.add_argument(
        "--worker",
        action="append",
        metavar="NAME",
        help="one more ingest account, for a further ingest worker (repeat for each); "
        "later syncs keep it",
    )
    bs.add_argument(
        "--drop-worker",
        action="append",
        metavar="NAME",
        help="remove a further ingest worker's account (repeat for each)",
    )
    bs.set_defaults(fn=_cmd_broker_sync)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the firesentry command."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args.config)
    except ConfigError as exc:
        print(f"firesentry: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log.level, settings.log.format)
    try:
        return int(args.fn(settings, args))
    except psycopg.OperationalError as exc:
        print(f"firesentry: database unreachable: {str(exc).strip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
