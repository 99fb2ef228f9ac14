"""`firesentry simulate`: simulated devices of all four types publishing to the broker.

The fleet is `--devices N` devices in units of four (`sim-u00001-em`, `-wl`, `-wp`, `-utd`).
`--create-fleet` registers it (units, devices, contacts; the bulk import path), keeps the
devices' MQTT passwords in the `--credentials` CSV, and runs `broker sync` when the private
broker has authentication on. The publishing itself is simulators/run.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import psycopg
from rich.console import Console

from devices.catalog import DeviceType
from devices.credentials import hash_many, new_password
from firesentry.config import Settings
from simulators.fleet import SUFFIX, FleetSpec
from simulators.run import (
    PER_DEVICE_DEFAULT_MAX,
    SimError,
    SimOptions,
    parse_faulty,
    print_summary,
    simulate,
)
from simulators.scenarios import SCENARIOS, parse
from simulators.signals import DEFAULT_TANK_DEPTH_M
from store import device_lookup
from store import registry as reg

DEFAULT_CREDENTIALS = "sim-credentials.csv"
REGISTRY_SETTLE_S = 1.2
_COLUMNS = ("device_id", "unit_id", "username", "password")


def read_credentials(path: Path) -> dict[str, tuple[str, str, str]]:
    """device id -> (unit id, username, password) from a credentials CSV (as import writes)."""
    out: dict[str, tuple[str, str, str]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["device_id"]] = (row["unit_id"], row["username"], row["password"])
    return out


def write_credentials(path: Path, rows: dict[str, tuple[str, str, str]]) -> None:
    """Write (replace) a credentials CSV, mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(_COLUMNS)
        for dev_id, (unit_id, username, password) in sorted(rows.items()):
            w.writerow((dev_id, unit_id, username, password))
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class FleetCreated:
    """What --create-fleet did."""

    devices_new: int
    devices_updated: int
    passwords_new: int
    passwords_reset: int
    credentials: Path


def create_fleet(dsn: str, spec: FleetSpec, heartbeat_s: int, credentials: Path) -> FleetCreated:
    """Register the fleet with the bulk import and keep every device's password in credentials.

    New devices get passwords from the import. A device that has a password the file does not
    know (the file was lost) gets a new one, so that the simulator can always log in.
    """
    from firesentry.registry import import_files

    known = read_credentials(credentials) if credentials.exists() else {}
    with tempfile.TemporaryDirectory(prefix="firesentry-fleet-") as d:
        units, devices, contacts = spec.write_csv(Path(d), heartbeat_s)
        fresh = Path(d) / "new-credentials.csv"
        res = import_files(dsn, units, devices, contacts, credentials_out=fresh)
        new = read_credentials(fresh) if fresh.exists() else {}
    rows = {**known, **new}
    ids = spec.ids()
    unknown = [i for i in ids if i not in rows]
    if unknown:
        passwords = [new_password() for _ in unknown]
        hashes = hash_many(passwords)
        with psycopg.connect(dsn) as conn, conn.transaction():
            for dev_id, hashed in zip(unknown, hashes, strict=True):
                reg.set_password_hash(conn, dev_id, hashed)
        for dev_id, password in zip(unknown, passwords, strict=True):
            rows[dev_id] = (spec.unit_of(dev_id), dev_id, password)
    if new or unknown:
        write_credentials(credentials, rows)
    return FleetCreated(
        res.devices.inserted, res.devices.updated, len(new), len(unknown), credentials
    )


def _registered_depths(dsn: str, spec: FleetSpec) -> tuple[dict[str, float], int]:
    """Tank depths of the fleet's water-level devices as registered, and how many of the
    fleet's devices are not registered at all."""
    ids = spec.ids()
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = device_lookup.device_kinds(conn, ids)
    depths: dict[str, float] = {}
    for d in rows:
        if d.type == DeviceType.WATER_LEVEL:
            depth = d.tank_depth_m
            try:
                depths[str(d.id)] = float(depth) if depth is not None else DEFAULT_TANK_DEPTH_M
            except ValueError:
                depths[str(d.id)] = DEFAULT_TANK_DEPTH_M
    return depths, len(ids) - len(rows)


def _list_scenarios() -> int:
    short = {t: SUFFIX[t] for t in DeviceType}
    print("fault scenarios: --scenario NAME[:KEY=VALUE,...] (repeatable), --faulty N|P%")
    for name, cls in SCENARIOS.items():
        types = (
            "all"
            if cls.types == frozenset(DeviceType)
            else "/".join(short[t] for t in DeviceType if t in cls.types)
        )
        default = cls()
        params = " ".join(
            f"{f.name}={getattr(default, f.name)}" for f in fields(cls) if f.name != "variants"
        )
        rules = f" -> {', '.join(cls.rules)}" if cls.rules else ""
        print(f"  {name:18} [{types}] {cls.summary}{rules}")
        print(f"  {'':18} {params}")
    return 0


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import resolve_endpoints
    from firesentry.broker import BrokerSyncError, sync
    from store.migrate import migrate

    if args.list_scenarios:
        return _list_scenarios()
    if args.protocol == "gb26875":
        return _simulate_gb26875(settings, args)
    out = Console()
    rate = args.rate if args.rate is not None else args.devices / 10.0
    spec = FleetSpec(args.devices, args.id_prefix)
    ep = resolve_endpoints(settings, start=True)
    dsn = ep.dsn()
    credentials = Path(args.credentials or DEFAULT_CREDENTIALS)
    auth_on = settings.embedded.enabled and ep.mqtt_username is not None
    if args.create_fleet:
        migrate(
            ep.migrate_dsn(),
            settings.storage.backend,
            lock_timeout_s=settings.database.migrate_lock_timeout_s,
        )
        interval = args.devices / rate if rate > 0 else 60.0
        made = create_fleet(dsn, spec, max(60, math.ceil(interval)), credentials)
        out.print(
            f"fleet: {args.devices} devices in {spec.units} units ({made.devices_new} new, "
            f"{made.devices_updated} updated); {made.passwords_new + made.passwords_reset} new "
            f"password(s) in {credentials}"
        )
        if auth_on:
            try:
                res = sync(settings)
            except BrokerSyncError as exc:
                print(f"firesentry: broker sync: {exc}", file=sys.stderr)
                return 2
            out.print(f"broker sync: {res.devices} device account(s), broker {res.action}")
        if made.devices_new:
            # A running engine re-reads the registry when it meets an unknown device, but at most
            # once a second: a message sooner than that after a re-read would be dead-lettered.
            time.sleep(REGISTRY_SETTLE_S)
    depths: dict[str, float] | None = None
    try:
        depths, missing = _registered_depths(dsn, spec)
    except psycopg.Error:
        missing = 0  # no database to ask: simulate anyway (ingest will say what it rejects)
    if missing:
        out.print(
            f"[yellow]{missing} of the {args.devices} devices are not registered (ingest rejects "
            "their messages); run with --create-fleet[/]"
        )
    logins: dict[str, tuple[str, str]] | None = None
    if auth_on or args.credentials:
        if not credentials.exists():
            print(
                f"firesentry: the broker needs device logins and {credentials} does not exist; "
                "run with --create-fleet",
                file=sys.stderr,
            )
            return 2
        logins = {k: (u, p) for k, (_, u, p) in read_credentials(credentials).items()}
    if args.shared_connection is None:
        shared = logins is None and args.devices > PER_DEVICE_DEFAULT_MAX
    else:
        shared = args.shared_connection
    opts = SimOptions(
        host=ep.mqtt_host,
        port=ep.mqtt_port,
        prefix=settings.mqtt.topic_prefix,
        devices=args.devices,
        rate=rate,
        duration_s=args.duration,
        seed=args.seed,
        id_prefix=args.id_prefix,
        scenarios=tuple(args.scenario or ()),
        faulty=args.faulty,
        fault_after_s=args.fault_after,
        processes=args.processes,
        shared_connection=shared,
        credentials=logins,
        depths=depths,
    )
    how = "one shared connection" if shared else "a connection per device"
    until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
    out.print(
        f"simulating {args.devices} devices at {rate:g} msg/s {until} on "
        f"{ep.mqtt_host}:{ep.mqtt_port} ({how}, {args.processes} process(es))"
    )
    try:
        summary = simulate(opts, progress=not args.no_progress)
    except SimError as exc:
        print(f"firesentry: {exc}", file=sys.stderr)
        return 2
    print_summary(summary, out)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return 1 if summary.counts["failed"] or summary.counts["refused"] else 0


def register_utds(dsn: str, id_prefix: str, n: int, base_address: int) -> dict[int, str]:
    """Register n shops, each with a UTD whose GB/T 26875.3 address is base_address + i;
    return address -> device id."""
    from store.gateway import ADDRESS_ATTRIBUTE

    out: dict[int, str] = {}
    with psycopg.connect(dsn) as conn, conn.transaction():
        for i in range(n):
            unit = f"{id_prefix}-g{i + 1:05d}"
            reg.add_unit(conn, unit, f"模拟单位 {i + 1}", district="模拟区")
            address = base_address + i
            device = f"{unit}-utd"
            reg.add_device(
                conn,
                device,
                unit,
                DeviceType.UTD,
                location="消防控制室",
                attributes={ADDRESS_ATTRIBUTE: str(address)},
            )
            out[address] = device
    return out


def _simulate_gb26875(settings: Settings, args: argparse.Namespace) -> int:
    """UTDs over TCP to the gateway (firesentry gateway gb26875)."""
    import asyncio

    from alerts.routing import load_routing
    from firesentry.app import resolve_endpoints
    from simulators.gb26875 import run_fleet
    from store.migrate import migrate

    host, port = args.gateway
    scenarios = [parse(x) for x in args.scenario or ()]
    wrong = [sc.name for sc in scenarios if DeviceType.UTD not in sc.types]
    if wrong:
        print(f"firesentry: --scenario {', '.join(wrong)}: not a UTD's", file=sys.stderr)
        return 2
    ep = resolve_endpoints(settings, start=True)
    if args.create_fleet:
        migrate(
            ep.migrate_dsn(),
            settings.storage.backend,
            lock_timeout_s=settings.database.migrate_lock_timeout_s,
        )
        register_utds(ep.dsn(), args.id_prefix, args.devices, args.address_base)
    addresses = [args.address_base + i for i in range(args.devices)]
    faulty = parse_faulty(args.faulty, len(addresses))
    events_of = {}
    for k, sc in enumerate(scenarios):
        for a in addresses[k * faulty : (k + 1) * faulty]:
            events_of[a] = sc.events()
    duration = args.duration if args.duration is not None else 60.0
    print(
        f"simulating {len(addresses)} UTDs (GB/T 26875.3, addresses {addresses[0]}…) to "
        f"{host}:{port} for {duration:g} s; {len(events_of)} with a scenario",
        flush=True,
    )
    stats = asyncio.run(
        run_fleet(
            host,
            port,
            addresses,
            events_of,
            onset_s=args.fault_after,
            heartbeat_s=args.heartbeat,
            duration_s=duration,
            timezone=load_routing(settings.notify.routing_file).timezone,
        )
    )
    slowest = max(stats.confirm_s, default=0.0)
    print(
        f"frames sent {stats.sent}, sent again {stats.resent}, confirmed {stats.confirmed}, "
        f"denied {stats.denied}, unconfirmed {stats.unconfirmed}; duty checks answered "
        f"{stats.duty_answers}, clock syncs {stats.clock_syncs}; slowest confirm {slowest:.2f} s",
        flush=True,
    )
    return 1 if stats.unconfirmed or stats.denied else 0


def _scenario(text: str) -> str:
    try:
        parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _share_or_count(text: str) -> str:
    t = text.strip()
    try:
        ok = 0 <= float(t[:-1]) <= 100 if t.endswith("%") else int(t) >= 0
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{text!r}: give a count (5) or a share (10%)")
    return t


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `simulate` command."""
    p = sub.add_parser(
        "simulate",
        help="simulated devices of all four types publish telemetry, events and faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--protocol",
        choices=("mqtt", "gb26875"),
        default="mqtt",
        help="mqtt (our contract, all four types) or gb26875: UTDs speaking GB/T 26875.3 over "
        "TCP to `firesentry gateway gb26875`",
    )
    p.add_argument("--gateway", default="127.0.0.1:7533", help="gb26875: the gateway's HOST:PORT")
    p.add_argument(
        "--address-base", type=int, default=100_000, help="gb26875: the first UTD's address"
    )
    p.add_argument(
        "--heartbeat", type=float, default=30.0, help="gb26875: seconds between status frames"
    )
    p.add_argument("--devices", type=int, default=100, help="fleet size (default 100)")
    p.add_argument(
        "--rate",
        type=float,
        help="messages per second for the whole fleet (default: each device every 10 s)",
    )
    p.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    p.add_argument(
        "--scenario",
        action="append",
        type=_scenario,
        metavar="NAME[:KEY=VALUE,...]",
        help="fault scenario, parameters optional, e.g. flaky_link:gap_s=3 (repeatable; "
        "--list-scenarios shows them)",
    )
    p.add_argument(
        "--faulty",
        type=_share_or_count,
        default="1",
        help="devices per scenario: a count (5) or a share of the eligible ones (10%%)",
    )
    p.add_argument(
        "--fault-after", type=float, default=5.0, help="seconds before faults start (default 5)"
    )
    p.add_argument(
        "--create-fleet",
        action="store_true",
        help="register units, devices and contacts first (passwords to --credentials)",
    )
    p.add_argument(
        "--credentials",
        help=f"device passwords CSV, read (and written by --create-fleet); default "
        f"{DEFAULT_CREDENTIALS}, used when the broker needs logins",
    )
    p.add_argument(
        "--processes", type=int, default=1, help="publishing processes, each with its share"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the signals (reproducible runs)")
    conn = p.add_mutually_exclusive_group()
    conn.add_argument(
        "--shared-connection",
        dest="shared_connection",
        action="store_const",
        const=True,
        help="one connection per process for every device's topic (anonymous brokers; the "
        f"default above {PER_DEVICE_DEFAULT_MAX} devices when no logins are needed)",
    )
    conn.add_argument(
        "--per-device-connections",
        dest="shared_connection",
        action="store_const",
        const=False,
        help="a connection (login, will message) per device",
    )
    p.add_argument("--id-prefix", default="sim", help="device ids start with this (default sim)")
    p.add_argument("--summary-json", help="also write the summary as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list-scenarios", action="store_true", help="describe the scenarios and exit")
    p.set_defaults(fn=_cmd_simulate, shared_connection=None)
