"""The demo's GB/T 26875.3 link: the gateway and one simulated UTD on a thread of their own.

The school's fire panel speaks the binary protocol over TCP, as installed UTDs do: its status
every few seconds and a detector fault, each frame confirmed by the gateway only once ingest
has committed it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from gateway.gb26875 import Gateway, GatewayOptions, Stats
from simulators.gb26875 import SimUtd, UtdStats, run_utd
from simulators.scenarios import ScheduledEvent


class DemoGatewayLink:
    """Start: the gateway listens and the UTD connects; stop: both end."""

    def __init__(
        self,
        options: GatewayOptions,
        address: int,
        events: Sequence[ScheduledEvent],
        heartbeat_s: float = 5.0,
    ) -> None:
        self.options = options
        self.address = address
        self.events = events
        self.heartbeat_s = heartbeat_s
        self.utd_stats = UtdStats()
        self.gateway_stats = Stats()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-gb26875", daemon=True)

    def start(self, within_s: float = 15.0) -> int:
        """Run until stop(); return the gateway's port."""
        self._thread.start()
        if not self._ready.wait(within_s) or self._error is not None:
            raise RuntimeError(f"the demo's GB/T 26875.3 gateway did not start: {self._error!r}")
        return self.port

    def stop(self) -> None:
        """End the UTD and the gateway."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        gw = Gateway(self.options)
        self.gateway_stats = gw.stats
        await gw.start()
        self.port = gw.port
        utd = SimUtd(self.address, self.utd_stats, ZoneInfo(self.options.timezone), resend_s=5.0)
        await utd.connect("127.0.0.1", self.port)
        self._ready.set()
        running = asyncio.create_task(
            run_utd(utd, self.events, 0.0, self.heartbeat_s, duration_s=86_400.0)
        )
        await self._stop.wait()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await utd.close()
        await gw.stop()
