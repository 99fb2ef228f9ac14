"""The `firesentry` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import psycopg

from firesentry.config import ConfigError, Settings, load_settings
from firesentry.logs import configure_logging


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

    embedded_services(settings).down()
    print("embedded services stopped (data kept)")
    return 0


def _cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import embedded_services

    for name, line in embedded_services(settings).status().items():
        print(f"{name:11} {line}")
    return 0


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import resolve_endpoints
    from store.migrate import migrate

    ep = resolve_endpoints(settings, start=True)
    applied = migrate(ep.dsn(), settings.storage.backend)
    print("\n".join(f"applied {a}" for a in applied) or "schema is up to date")
    return 0


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from firesentry.app import Engine, resolve_endpoints
    from store.migrate import migrate

    ep = resolve_endpoints(settings, start=True)
    migrate(ep.dsn(), settings.storage.backend)
    Engine(settings, ep).run_until_signal()
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
    sub.add_parser("down", help="stop them (data kept)").set_defaults(fn=_cmd_down)
    sub.add_parser("status", help="show whether they run").set_defaults(fn=_cmd_status)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(
        fn=_cmd_migrate
    )
    sub.add_parser("run", help="run the engine until SIGTERM").set_defaults(fn=_cmd_run)
    demo = sub.add_parser("demo", help="services + seeded fleet + engine + simulator + receiver")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(fn=_cmd_demo)
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
