"""The thread every fake service runs its asyncio server in, and the aiohttp base."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Self

from aiohttp import web


class ServerThread:
    """An asyncio server on 127.0.0.1 in a thread of its own; subclasses open and close it."""

    thread_name = "fake-server"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0
        self.attempts = 0
        self.delay_s = 0.0

    async def _open(self) -> int:
        """Start listening on 127.0.0.1:0 and return the port."""
        raise NotImplementedError

    async def _close(self) -> None:
        """Stop listening and release what _open took."""

    def start(self) -> Self:
        """Start serving; returns self once the port is bound."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stopping = asyncio.Event()
            try:
                self.port = loop.run_until_complete(self._open())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=serve, name=self.thread_name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.thread_name} did not start")
        if failed:
            raise RuntimeError(f"{self.thread_name} did not start") from failed[0]
        return self

    def stop(self) -> None:
        """Stop serving; a request that is being delayed is answered 503 and not recorded."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._halt)
            thread.join(10)

    def _halt(self) -> None:
        assert self._stopping is not None and self._loop is not None
        self._stopping.set()
        self._loop.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each request (0: answer at once)."""
        self.delay_s = seconds

    async def _pause(self) -> bool:
        """Wait out the configured delay; True if the server is stopping meanwhile."""
        stopping = self._stopping
        assert stopping is not None
        if self.delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.delay_s)
        return stopping.is_set()


class HttpServer(ServerThread):
    """An aiohttp application served by a ServerThread."""

    def __init__(self) -> None:
        super().__init__()
        self._runner: web.AppRunner | None = None

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _open(self) -> int:
        app = web.Application()
        self._routes(app)
        # Short: a test's teardown should not wait long for a request the fake is delaying.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        return int(runner.addresses[0][1])

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"
