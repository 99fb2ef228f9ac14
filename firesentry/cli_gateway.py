"""`firesentry gateway gb26875 --listen HOST:PORT`: UTDs speaking GB/T 26875.3 over TCP."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from firesentry.config import Settings

MQTT_PASSWORD_ENV = "FIRESENTRY_GATEWAY_MQTT_PASSWORD"


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT, for --listen and --gateway."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: give HOST:PORT, e.g. 0.0.0.0:7533")
    return host or "0.0.0.0", int(port)


def _cmd_gb26875(settings: Settings, args: argparse.Namespace) -> int:
    from alerts.routing import load_routing
    from firesentry.app import resolve_endpoints
    from gateway.gb26875 import Gateway, GatewayOptions
    from store.migrate import migrate

    if not 0 < args.duty_check_min <= 120:
        print("firesentry: --duty-check-min: 1 to 120 (GB 50440: at most 2 h)", file=sys.stderr)
        return 2
    ep = resolve_endpoints(settings, start=True)
    migrate(
        ep.migrate_dsn(),
        settings.storage.backend,
        lock_timeout_s=settings.database.migrate_lock_timeout_s,
    )
    host, port = args.listen
    user, password = args.mqtt_user, os.environ.get(MQTT_PASSWORD_ENV)
    if user is None and settings.embedded.enabled:
        from firesentry.app import embedded_services
        from firesentry.broker import GATEWAY_SECRET, gateway_account

        folder = embedded_services(settings).mosquitto.root
        if (folder / GATEWAY_SECRET).exists() and ep.mqtt_username is not None:
            # The private broker has accounts (broker sync): the gateway logs in with its own.
            user, password = gateway_account(folder)
    options = GatewayOptions(
        host,
        port,
        ep.dsn(),
        ep.mqtt_host,
        ep.mqtt_port,
        topic_prefix=settings.mqtt.topic_prefix,
        mqtt_username=user,
        mqtt_password=password,
        timezone=load_routing(settings.notify.routing_file).timezone,
        duty_check_s=args.duty_check_min * 60.0,
    )

    async def main() -> None:
        gw = Gateway(options)
        await gw.start()
        print(f"gateway gb26875 listening on {host}:{gw.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        await stop.wait()
        await gw.stop()
        print(f"gateway stopped: {gw.stats}", flush=True)

    asyncio.run(main())
    return 0


def register(sub: Any) -> None:
    """Add `gateway gb26875` to the CLI."""
    gw = sub.add_parser("gateway", help="gateways for devices that do not speak MQTT")
    gsub = gw.add_subparsers(dest="gateway_command", required=True)
    gb = gsub.add_parser(
        "gb26875",
        help="UTDs speaking GB/T 26875.3-2011 over TCP; their events go to ingest over MQTT",
    )
    gb.add_argument("--listen", type=parse_listen, default=("0.0.0.0", 7533), metavar="HOST:PORT")
    gb.add_argument(
        "--mqtt-user", default=None, help=f"broker account (password: ${MQTT_PASSWORD_ENV})"
    )
    gb.add_argument(
        "--duty-check-min", type=float, default=120.0, help="查岗 period, minutes (≤ 120)"
    )
    gb.set_defaults(fn=_cmd_gb26875)
