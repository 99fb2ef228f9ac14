"""The composition root: builds ingest, rules, alerts and the outbox worker from Settings."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import structlog

from alerts.dispatch import Dispatcher, DispatchOptions
from alerts.outbox import OutboxOptions, OutboxWorker
from alerts.routing import RoutingError, load_routing
from alerts.types import Receiver
from devices.registry import Registry
from firesentry.channels import build_notifiers, robot_channels
from firesentry.config import Settings
from firesentry.embedded import EmbeddedServices, Endpoints
from ingest.consumer import Consumer, ConsumerOptions
from ingest.decode import BatchDecoder, Limits
from ingest.pipeline import BatchResult, Pipeline
from rules.engine import RuleEngine
from rules.loader import load_rules

log = structlog.get_logger("firesentry")


def embedded_services(settings: Settings, durable: bool = True) -> EmbeddedServices:
    """The private services described by the embedded section."""
    e = settings.embedded
    return EmbeddedServices(
        e.dir,
        mosquitto_bin=e.mosquitto_bin,
        pg_bin_dir=e.pg_bin_dir,
        durable=durable,
        timescaledb=e.timescaledb,
    )


def resolve_endpoints(settings: Settings, *, start: bool = False) -> Endpoints:
    """Return where the broker and database are: embedded (started if asked) or configured."""
    if settings.embedded.enabled:
        svc = embedded_services(settings)
        ep = svc.endpoints()
        if ep is None:
            if not start:
                raise RuntimeError("embedded services are not running; run `firesentry up` first")
            log.info("starting embedded services", dir=str(svc.root))
            ep = svc.up()
        return ep
    db, mq = settings.database, settings.mqtt
    return Endpoints(
        mq.host,
        mq.port,
        db.host,
        db.port,
        db.dbname,
        db.user,
        db.password.get_secret_value() if db.password else "",
    )


class Engine:
    """ingest + rules + alerts + outbox, started and stopped as one."""

    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        *,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.dsn = endpoints.dsn()
        rule_file = load_rules(settings.rules.file)
        hooks = settings.notify.webhooks
        self.receivers = [
            Receiver(name, "webhook", w.send_resolved, w.max_attempts) for name, w in hooks.items()
        ]
        ing = settings.ingest
        decoder = BatchDecoder(
            settings.mqtt.topic_prefix,
            Limits(
                max_payload_bytes=ing.max_payload_bytes,
                max_future_ms=ing.max_future_s * 1000,
                max_age_ms=settings.storage.retention_days * 86_400_000,
            ),
        )
        routing = load_routing(settings.notify.routing_file)
        unknown = routing.robots() - set(settings.notify.robots)
        if unknown:
            raise RoutingError(
                f"the routing file names robots {sorted(unknown)} that are not under notify.robots"
            )
        self.routing = routing
        person = frozenset(
            ch
            for ch, on in (
                ("sms", bool(settings.notify.sms)),
                ("email", settings.notify.email is not None),
            )
            if on
        )
        unconfigured = {ch for r in routing.routes for t in r.tiers for ch in t.channels} - person
        if unconfigured:
            log.warning(
                "the routing file uses channels with no provider configured; "
                "messages on them are not queued",
                channels=sorted(unconfigured),
            )
        dispatcher = Dispatcher(
            DispatchOptions(routing, self.receivers, robot_channels(settings), person)
        )
        empty = Registry.of([])
        self.pipeline = Pipeline(
            decoder,
            RuleEngine(rule_file, empty),
            empty,
            dispatcher,
            registry_refresh_s=ing.registry_refresh_s,
            partitions_ahead_days=settings.storage.partitions_ahead_days,
            retention_days=settings.storage.retention_days,
            silence_check_s=settings.rules.silence_check_s,
        )
        mq = settings.mqtt
        # A configured account wins; otherwise the one `broker sync` made for the private broker.
        username, password = (
            (mq.username, mq.password.get_secret_value() if mq.password else None)
            if mq.username
            else (endpoints.mqtt_username, endpoints.mqtt_password)
        )
        self.consumer = Consumer(
            ConsumerOptions(
                host=endpoints.mqtt_host,
                port=endpoints.mqtt_port,
                client_id=mq.client_id,
                topic_prefix=mq.topic_prefix,
                username=username,
                password=password,
                keepalive_s=mq.keepalive_s,
                session_expiry_s=mq.session_expiry_s,
                receive_maximum=mq.receive_maximum,
                shared_group=mq.shared_group,
                batch_max=ing.batch_max,
                batch_wait_ms=ing.batch_wait_ms,
                retry_max_s=ing.retry_max_s,
            ),
            self.pipeline,
            self._connect_db,
            on_batch=on_batch,
        )
        n = settings.notify
        self._outbox_opts = OutboxOptions(
            poll_interval_s=n.poll_interval_s,
            backoff_base_s=n.backoff_base_s,
            backoff_max_s=n.backoff_max_s,
            lease_s=n.lease_s,
            rate_limits={
                ch: (lim.max, lim.window_min * 60) for ch, lim in routing.rate_limits.items()
            },
            timezone=routing.timezone,
        )
        self._outbox: OutboxWorker | None = None
        self._outbox_loop: asyncio.AbstractEventLoop | None = None
        self._outbox_thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def _connect_db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=int(self.settings.database.connect_timeout_s),
            application_name="firesentry-ingest",
        )

    def _run_outbox(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._outbox_loop = loop

        async def main() -> None:
            async with aiohttp.ClientSession() as session:
                notifiers = build_notifiers(self.settings, session)
                self._outbox = OutboxWorker(
                    self.dsn,
                    notifiers,
                    {r.name: r.max_attempts for r in self.receivers},
                    self._outbox_opts,
                )
                ready.set()
                await self._outbox.run()

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def start(self) -> None:
        """Start the consumer and the outbox worker; returns when both are running."""
        self.consumer.start()
        ready = threading.Event()
        self._outbox_thread = threading.Thread(
            target=self._run_outbox, args=(ready,), name="outbox", daemon=True
        )
        self._outbox_thread.start()
        ready.wait(10)
        log.info(
            "engine running",
            mqtt=f"{self.endpoints.mqtt_host}:{self.endpoints.mqtt_port}",
            database=f"{self.endpoints.db_host}:{self.endpoints.db_port}/{self.endpoints.db_name}",
            webhooks=[r.name for r in self.receivers],
        )

    def stop(self) -> None:
        """Drain the current batch, ack it, stop the outbox worker."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping engine")
        self.consumer.stop()
        if self._outbox is not None and self._outbox_loop is not None:
            self._outbox_loop.call_soon_threadsafe(self._outbox.stop)
        if self._outbox_thread is not None:
            self._outbox_thread.join(15)

    def reload_rules(self) -> None:
        """Re-read the rule file and swap it in between two batches (state of kept rules stays)."""
        path = self.settings.rules.file
        log.info("rule reload requested", file=str(path) if path else "(default)")
        self.consumer.request_reload(lambda: load_rules(path))

    @property
    def pid_file(self) -> Path:
        """Where the running engine leaves its pid, for `firesentry rules reload`."""
        return self.settings.embedded.dir / "engine.pid"

    def run_until_signal(self, extra_stop: threading.Event | None = None) -> None:
        """Run until SIGTERM or SIGINT (or extra_stop), then stop gracefully; SIGHUP reloads rules."""
        stop = extra_stop or threading.Event()

        def handler(signum: int, frame: object) -> None:
            log.info("signal received", signal=signal.Signals(signum).name)
            stop.set()

        old_term = signal.signal(signal.SIGTERM, handler)
        old_int = signal.signal(signal.SIGINT, handler)
        old_hup = signal.signal(signal.SIGHUP, lambda *_: self.reload_rules())
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{os.getpid()}\n")
        try:
            self.start()
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
            self.pid_file.unlink(missing_ok=True)
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGHUP, old_hup)
