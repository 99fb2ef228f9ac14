"""The composition root: builds ingest, rules, alerts and the outbox worker from Settings.

Supervision policy. The engine's workers are ingest's batch thread (which also runs
escalation and deadman ticks), the outbox process (an asyncio loop around OutboxWorker, off
ingest's GIL: see firesentry/outbox_process.py), the health writer thread, and in
`firesentry run` the API server. Each handles the failures it expects:
ingest retries a batch until the database takes it, the outbox waits out database outages
and retries a failed round. A worker that ends anyway is a bug or a broken environment, and
the process does not limp on without it: the watchdog in `run_until_signal` logs the worker's
traceback, stops the other workers gracefully (ingest commits and acks what it can; what was
not acked is redelivered by the broker) and the command exits EX_SOFTWARE (70), so that its
service manager (systemd `Restart=on-failure`) starts it again. Ack-after-commit and the
transactional outbox are what make this crash-only restart safe.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog

from alerts.outbox import OutboxOptions
from alerts.planner import DispatchOptions
from alerts.retry import DEFAULT_POLICIES, RetryPolicy
from alerts.routing import RoutingError, load_routing
from alerts.types import Receiver
from devices.registry import Registry
from firesentry.channels import (
    fire_119_options,
    hazard_options,
    person_channels,
    robot_channels,
)
from firesentry.config import RetryPolicyConfig, Settings, transport_warnings
from firesentry.embedded import BrokerTls, EmbeddedServices, Endpoints
from firesentry.outbox_process import EX_SOFTWARE, OutboxProcess, OutboxSpec
from ingest.consumer import Consumer, ConsumerOptions
from ingest.decode import BatchDecoder, Limits
from ingest.pipeline import BatchResult, Pipeline
from rules.engine import RuleEngine
from rules.loader import load_rules
from store import health
from supervision.grader import GradingWorker
from supervision.model import load_model

log = structlog.get_logger("firesentry")

# Test-only fault injection, off unless this variable names a fault (see FAULTS).
FAULT_ENV = "FIRESENTRY_FAULT_INJECT"
# ingest_thread: the batch thread raises after its first committed batch (no external fault
# can kill that thread: it retries every error it expects).
FAULTS = frozenset({"ingest_thread"})


class InjectedFault(RuntimeError):
    """The failure FIRESENTRY_FAULT_INJECT asked for (tests of the supervision only)."""


@dataclass(frozen=True, slots=True)
class WorkerState:
    """What a watched worker says of itself: alive, and the exception it died of (if known)."""

    alive: bool
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class WorkerDeath:
    """A worker that ended while the engine was meant to be running."""

    worker: str
    error: BaseException | None


def _fault_from_env() -> str | None:
    fault = os.environ.get(FAULT_ENV, "").strip() or None
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"{FAULT_ENV}={fault!r}: known faults are {', '.join(sorted(FAULTS))}")
    return fault


def embedded_services(settings: Settings, durable: bool = True) -> EmbeddedServices:
    """The private services described by the embedded section."""
    e = settings.embedded
    t = e.tls
    return EmbeddedServices(
        e.dir,
        mosquitto_bin=e.mosquitto_bin,
        pg_bin_dir=e.pg_bin_dir,
        durable=durable,
        timescaledb=e.timescaledb,
        max_payload_bytes=settings.ingest.max_payload_bytes,
        tls=BrokerTls(
            t.enabled, t.bind, t.port, tuple(t.hosts), t.cert_file, t.key_file, t.ca_file
        ),
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
            ep = svc.up(settings.storage.backend)
        # The engine, the API and the CLI log in as the app role, which owns nothing;
        # migrate_dsn() still reaches the schema owner.
        return ep.as_app()
    db, mq = settings.database, settings.mqtt
    return Endpoints(
        mq.host,
        mq.port,
        db.host,
        db.port,
        db.dbname,
        db.user,
        db.password.get_secret_value() if db.password else "",
        migrate_user=db.migrate_user,
        migrate_password=db.migrate_password.get_secret_value() if db.migrate_password else None,
        db_sslmode=db.sslmode,
        db_sslrootcert=db.sslrootcert,
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
        self._on_batch = on_batch
        self._fault = _fault_from_env()
        self._last_batch_at: dt.datetime | None = None
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
        person = person_channels(settings)
        unconfigured = {ch for r in routing.routes for t in r.tiers for ch in t.channels} - person
        if unconfigured:
            log.warning(
                "the routing file uses channels with no provider configured; "
                "messages on them are not queued",
                channels=sorted(unconfigured),
            )
        dispatch = DispatchOptions(routing, self.receivers, robot_channels(settings), person)
        empty = Registry.of([])
        self.pipeline = Pipeline(
            decoder,
            RuleEngine(rule_file, empty),
            empty,
            dispatch,
            registry_refresh_s=ing.registry_refresh_s,
            partitions_ahead_days=settings.storage.partitions_ahead_days,
            retention_days=settings.storage.retention_days,
            silence_check_s=settings.rules.silence_check_s,
            fire_119=fire_119_options(settings, routing.timezone),
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
                # The private broker is reached over loopback: mqtt.tls is for external ones.
                tls=mq.tls.enabled and not settings.embedded.enabled,
                tls_ca_file=str(mq.tls.ca_file) if mq.tls.ca_file else None,
                tls_cert_file=str(mq.tls.cert_file) if mq.tls.cert_file else None,
                tls_key_file=str(mq.tls.key_file) if mq.tls.key_file else None,
                tls_check_hostname=mq.tls.check_hostname,
            ),
            self.pipeline,
            self._connect_db,
            on_batch=self._after_batch,
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
            connect_timeout_s=settings.database.connect_timeout_s,
            dead_after_s=n.dead_after_s,
            retry={**DEFAULT_POLICIES, **{sev: _policy(p) for sev, p in n.retry.items()}},
            channel_alert_after_s=n.channel_alert_after_s,
            channel_check_s=n.channel_check_s,
            failover_after_s=n.failover_after_s,
            receipts=any(p.receipts for p in n.sms.values()),
            # The control room's machine receivers: every webhook and robot.
            control_room=[("webhook", r.name) for r in self.receivers]
            + [(kind, name) for name, kind in robot_channels(settings).items()],
        )
        self._outbox = OutboxProcess(
            OutboxSpec(
                settings,
                self.dsn,
                {r.name: r.max_attempts for r in self.receivers},
                self._outbox_opts,
            )
        )
        self._stopped = threading.Event()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._started_at = dt.datetime.now(dt.UTC)
        self._health_thread: threading.Thread | None = None
        self._health_stop = threading.Event()
        self._health_failure: BaseException | None = None
        # Removed on a deliberate stop; kept (saying what died) when the engine exits on a failure.
        self._deregister = True
        sup = settings.supervision
        rule_names = {r.id: r.name.zh_cn if r.name else r.id for r in rule_file.rules}
        self.grading = (
            GradingWorker(
                load_model(sup.risk_model),
                self._connect_grading_db,
                sup.grade_every_s,
                hazards=hazard_options(settings, routing.timezone),
                rule_names=rule_names,
            )
            if sup.grading
            else None
        )
        self._watched: dict[str, Callable[[], WorkerState]] = {
            "ingest": lambda: WorkerState(self.consumer.alive(), self.consumer.failure),
            "outbox": lambda: WorkerState(self._outbox.alive(), self._outbox.failure()),
            "health": lambda: WorkerState(
                self._thread_alive(self._health_thread), self._health_failure
            ),
        }
        if self.grading is not None:
            grading = self.grading
            self._watched["grading"] = lambda: WorkerState(grading.alive(), grading.failure)

    @staticmethod
    def _thread_alive(t: threading.Thread | None) -> bool:
        return t is not None and t.is_alive()

    def _after_batch(self, result: BatchResult) -> None:
        self._last_batch_at = dt.datetime.now(dt.UTC)
        if self._fault == "ingest_thread":
            raise InjectedFault(f"{FAULT_ENV}=ingest_thread: the ingest batch thread fails here")
        if self._on_batch is not None:
            self._on_batch(result)

    def _connect_db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=int(self.settings.database.connect_timeout_s),
            application_name="firesentry-ingest",
        )

    def health_report(self) -> health.EngineHealth:
        """This process's report for engine_health (cheap: read from memory)."""
        return health.EngineHealth(
            client_id=self.settings.mqtt.client_id,
            host=self.host,
            pid=self.pid,
            started_at=self._started_at,
            broker_connected=self.consumer.broker_connected,
            ingest_alive=self.consumer.alive(),
            outbox_alive=self._outbox.alive(),
            ingest_lag_s=round(self.consumer.lag_s(), 3),
            committed_messages=self.consumer.committed_messages,
            last_batch_at=self._last_batch_at,
        )

    def _connect_health_db(self) -> psycopg.Connection[Any]:
        # Short timeouts everywhere: this thread must notice a dead link and come back fast,
        # never hang on one (tcp_user_timeout also bounds a write into a black-holed link).
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(2, round(min(5.0, self.settings.database.connect_timeout_s))),
            application_name="firesentry-health",
            options="-c statement_timeout=3000",
            tcp_user_timeout=5000,
        )

    def _connect_grading_db(self) -> psycopg.Connection[Any]:
        # Grading reads a week of alerts per unit: allow it a minute, never an endless hang.
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(2, round(self.settings.database.connect_timeout_s)),
            application_name="firesentry-grading",
            options="-c statement_timeout=60000",
            tcp_user_timeout=30000,
        )

    def _run_health(self) -> None:
        """Write this engine's health every WRITE_INTERVAL_S on a connection of its own."""
        conn: psycopg.Connection[Any] | None = None
        outage = health.Outage()

        def attempt(action: Callable[[psycopg.Connection[Any]], None]) -> None:
            nonlocal conn
            try:
                try:
                    if conn is None or conn.closed:
                        conn = self._connect_health_db()
                    action(conn)
                except psycopg.OperationalError:
                    if conn is None:
                        raise
                    # A connection broken while idle shows it only when used: one fresh try.
                    conn.close()
                    conn = self._connect_health_db()
                    action(conn)
            except psycopg.Error as exc:
                if conn is not None:
                    conn.close()
                conn = None
                down_for = outage.failed()
                if down_for is not None:
                    log.warning(
                        "cannot write engine health; retrying",
                        error=str(exc).strip()[:200],
                        down_for_s=round(down_for, 1),
                    )
                return
            lasted = outage.recovered()
            if lasted is not None:
                log.info("engine health written again", down_for_s=round(lasted, 1))

        try:
            while not self._health_stop.is_set():
                attempt(lambda c: health.write(c, self.health_report()))
                self._health_stop.wait(health.WRITE_INTERVAL_S)
            if self._deregister:
                attempt(
                    lambda c: health.remove(c, self.settings.mqtt.client_id, self.host, self.pid)
                )
            else:
                attempt(lambda c: health.write(c, self.health_report()))
        except BaseException as exc:  # kept for the watchdog, which logs it once
            self._health_failure = exc
        finally:
            if conn is not None:
                conn.close()

    def watch(self, name: str, probe: Callable[[], WorkerState]) -> None:
        """Supervise one more worker (the in-process API server) with the engine's own."""
        self._watched[name] = probe

    def dead_worker(self) -> WorkerDeath | None:
        """The first watched worker that ended although the engine was not stopped, if any."""
        if self._stopped.is_set():
            return None
        for name, probe in self._watched.items():
            state = probe()
            if not state.alive:
                return WorkerDeath(name, state.error)
        return None

    def report_death(self, death: WorkerDeath) -> None:
        """Log a dead worker with its traceback, before the engine stops and exits 70."""
        log.error(
            "worker died; stopping the others and exiting for a restart",
            worker=death.worker,
            error=repr(death.error) if death.error is not None else "ended without an exception",
            exit_code=EX_SOFTWARE,
            exc_info=death.error,
        )

    def start(self) -> None:
        """Start the consumer and the outbox process; returns when both are running."""
        # The batch and writer threads wait on sockets between short steps; with the MQTT
        # threads busy, each step waited up to the default 5 ms for the GIL.
        sys.setswitchinterval(0.001)
        # Spawned first, while this process is still quiet; it imports its modules while
        # ingest connects.
        self._outbox.start()
        self.consumer.start()
        if not self._outbox.wait_ready(30):
            log.warning("the outbox process is slow to start; ingest runs meanwhile")
        self._health_thread = threading.Thread(
            target=self._run_health, name="engine-health", daemon=True
        )
        self._health_thread.start()
        if self.grading is not None:
            self.grading.start()
        for w in transport_warnings(self.settings):
            log.warning(
                "insecure transport" + (" (loopback: stays on this machine)" if w.loopback else ""),
                receiver=w.receiver,
                url=w.url,
                loopback=w.loopback,
                problem=w.problem,
            )
        log.info(
            "engine running",
            mqtt=f"{self.endpoints.mqtt_host}:{self.endpoints.mqtt_port}",
            database=f"{self.endpoints.db_host}:{self.endpoints.db_port}/{self.endpoints.db_name}",
            webhooks=[r.name for r in self.receivers],
        )

    def stop(self, *, deregister: bool = True) -> None:
        """Drain the current batch, ack it, stop the outbox worker and the health writer.

        deregister: remove this engine's health row (a deliberate stop); False leaves its last
        report, naming what died, for /readyz until the restarted engine replaces it.
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._deregister = deregister
        log.info("stopping engine")
        self.consumer.stop()
        # After ingest: what its last batch queued still goes out in the outbox's next round.
        self._outbox.stop(15)
        if self.grading is not None:
            self.grading.stop()
        self._health_stop.set()
        if self._health_thread is not None:
            self._health_thread.join(15)

    def reload_rules(self) -> None:
        """Re-read the rule file and swap it in between two batches (state of kept rules stays)."""
        path = self.settings.rules.file
        log.info("rule reload requested", file=str(path) if path else "(default)")
        self.consumer.request_reload(lambda: load_rules(path))

    @property
    def pid_file(self) -> Path:
        """Where the running engine leaves its pid, for `firesentry rules reload`."""
        return self.settings.embedded.dir / "engine.pid"

    def run_until_signal(self, extra_stop: threading.Event | None = None) -> int:
        """Run until SIGTERM/SIGINT/extra_stop (return 0) or a worker dies (return 70).

        Either way the other workers stop gracefully first; SIGHUP reloads the rules.
        """
        stop = extra_stop or threading.Event()
        received: list[int] = []
        hup = threading.Event()

        # Handlers only take note: they run in the main thread between two bytecodes, maybe in
        # the middle of a log line that holds the log's (non-reentrant) write lock, so logging
        # from one would deadlock the process (seen: SIGTERM during start-up's warnings).
        def handler(signum: int, frame: object) -> None:
            received.append(signum)
            stop.set()

        old_term = signal.signal(signal.SIGTERM, handler)
        old_int = signal.signal(signal.SIGINT, handler)
        old_hup = signal.signal(signal.SIGHUP, lambda *_: hup.set())
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{os.getpid()}\n")
        death: WorkerDeath | None = None
        try:
            self.start()
            while not stop.wait(0.5):
                if hup.is_set():
                    hup.clear()
                    self.reload_rules()
                death = self.dead_worker()
                if death is not None:
                    self.report_death(death)
                    break
            if received:
                log.info("signal received", signal=signal.Signals(received[0]).name)
        finally:
            self.stop(deregister=death is None)
            self.pid_file.unlink(missing_ok=True)
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGHUP, old_hup)
        return EX_SOFTWARE if death is not None else 0


def _policy(p: RetryPolicyConfig) -> RetryPolicy:
    """The outbox's retry policy from its configuration."""
    horizon = None if p.horizon_min is None else p.horizon_min * 60
    return RetryPolicy(
        p.max_attempts, horizon, p.max_interval_s, p.while_open and horizon is not None
    )
