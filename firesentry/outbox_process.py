"""The outbox worker in a process of its own, started, watched and stopped by the engine.

In the engine's process the outbox's HTTP requests, JSON and TLS work ran on the same GIL as
ingest's batch and writer threads: at half the sustained rate (200 alerts/s) py-spy put 11 % of
the engine's samples in the webhook requests alone, and every one of them delayed the batch
behind it. It needs nothing of the engine but the settings and the database (notifications
are rows; new ones wake it by NOTIFY).

It is started as `python -m firesentry.outbox_process`, not through multiprocessing: spawn
re-imports the engine's main module (the whole CLI, ingest and numpy) in the child and adds a
resource-tracker process, ~95 MB together against ~45 MB for the worker's own imports. The
spec goes to it pickled on stdin; it speaks back over a pipe (see OutboxProcess._listen).

The child dies with the engine: a kill -9 of the engine cannot take the child with it, so the
child looks at its parent twice a second and stops (finishing its round) when the parent is
gone. A notification being sent at that moment is leased, so a restarted engine's outbox sends
it again after the lease, with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection

import aiohttp
import structlog

from alerts.outbox import OutboxOptions, OutboxWorker
from firesentry.config import Settings
from store import instruments

log = structlog.get_logger("firesentry")

# sysexits.h: an internal software error; the service manager restarts us (the engine exits
# with it when a worker dies, and this process when its worker gives up).
EX_SOFTWARE = 70
_PARENT_CHECK_S = 0.5
_READY = "ready"
_COUNT = "count"
_DIED = "died"


@dataclass(frozen=True, slots=True)
class OutboxSpec:
    """What the outbox process is built from (pickled to it)."""

    settings: Settings
    dsn: str
    max_attempts: Mapping[str, int]
    options: OutboxOptions


class OutboxExited(RuntimeError):
    """The outbox process ended while the engine was running."""


class OutboxProcess:
    """One outbox worker in a child process."""

    def __init__(self, spec: OutboxSpec) -> None:
        self._spec = spec
        self._proc: subprocess.Popen[bytes] | None = None
        # What the child says: READY once its worker is built; its delivery counts as they
        # happen, for /metrics; on its way out, the traceback of what killed the worker.
        self._said: Connection | None = None
        self._ready = threading.Event()
        self._last_words = ""
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        """Start the child (see wait_ready)."""
        r, w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "firesentry.outbox_process", str(w), str(os.getpid())],
                stdin=subprocess.PIPE,
                pass_fds=(w,),
            )
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)  # the child holds its own copy: EOF here once it has gone
        self._proc = proc
        self._said = Connection(r, writable=False)
        assert proc.stdin is not None
        with proc.stdin:
            proc.stdin.write(pickle.dumps(self._spec))
        self._listener = threading.Thread(target=self._listen, name="outbox-said", daemon=True)
        self._listener.start()

    def _listen(self) -> None:
        assert self._said is not None
        with self._said:
            while True:
                try:
                    said = self._said.recv()
                except (EOFError, OSError):
                    return
                if said == _READY:
                    self._ready.set()
                elif said[0] == _COUNT:
                    instruments.notifications(*said[1:])
                else:
                    self._last_words = "; its worker died of:\n" + str(said[1])

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the child's worker is built (it then connects and listens), or False."""
        return self._ready.wait(timeout_s)

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start)."""
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        """Whether the child runs."""
        return self._proc is not None and self._proc.poll() is None

    def failure(self) -> BaseException | None:
        """Why the child ended, once it has: how, and the traceback its worker died of."""
        if self._proc is None or self._proc.poll() is None:
            return None
        code = self._proc.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        if self._listener is not None:
            self._listener.join(2)  # its last words may still be in the pipe
        return OutboxExited(f"the outbox process ({self._proc.pid}) ended, {how}{self._last_words}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the child to finish its round and exit; kill it after timeout_s."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("outbox process did not stop in time; killing it", pid=proc.pid)
            proc.kill()
            proc.wait(5)


def main(argv: list[str]) -> int:
    """The child: run the outbox until SIGTERM or the parent's death."""
    # Ctrl-C reaches the whole process group; the engine stops this process itself, after ingest.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    say = Connection(int(argv[0]), readable=False)
    parent = int(argv[1])
    # Only the engine that started this process writes its stdin.
    spec: OutboxSpec = pickle.loads(sys.stdin.buffer.read())
    from firesentry.logs import configure_logging

    configure_logging(spec.settings.log.level, spec.settings.log.format)
    try:
        asyncio.run(_serve(spec, parent, say))
    except Exception as exc:
        with contextlib.suppress(OSError):
            say.send((_DIED, "".join(traceback.format_exception(exc)).rstrip()))
        return EX_SOFTWARE
    return 0


async def _serve(spec: OutboxSpec, parent: int, say: Connection) -> None:
    from firesentry.channels import build_notifiers

    loop = asyncio.get_running_loop()
    instruments.send_notification_counts_to(lambda *count: say.send((_COUNT, *count)))
    async with aiohttp.ClientSession() as session:
        worker = OutboxWorker(
            spec.dsn, build_notifiers(spec.settings, session), spec.max_attempts, spec.options
        )
        loop.add_signal_handler(signal.SIGTERM, worker.stop)
        say.send(_READY)
        watcher = asyncio.create_task(_watch_parent(parent, worker))
        try:
            await worker.run()
        finally:
            watcher.cancel()


async def _watch_parent(parent: int, worker: OutboxWorker) -> None:
    # Nothing wakes a child when its parent dies (PR_SET_PDEATHSIG follows the thread that
    # spawned it, not the process), so it looks.
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(_PARENT_CHECK_S)
    log.warning("the engine is gone; the outbox stops", engine_pid=parent)
    worker.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
