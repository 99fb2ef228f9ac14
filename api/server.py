"""Serve the app from a thread of its own (beside the engine's threads) until stopped."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import structlog
from aiohttp import web

from api.app import build_app
from api.state import ApiOptions

log = structlog.get_logger("api")


class ApiServer:
    """The API on host:port (0: a free port), in a background thread with its own event loop."""

    def __init__(self, options: ApiOptions, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.options = options
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL (after start, with the port actually bound)."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> ApiServer:
        """Bind and serve; raise OSError at once if the address is taken."""
        self._thread = threading.Thread(target=self._main, name="api", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the API did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        log.info("api listening", url=self.url)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Close open streams, stop serving and wait for the thread."""
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.set_default_executor(
            ThreadPoolExecutor(self.options.pool_max + 4, thread_name_prefix="api-db")
        )
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread ends
            self._error = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(build_app(self.options), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
