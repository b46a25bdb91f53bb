"""A background task that runs one coroutine now and then every ``interval`` seconds until stopped.

The budget service uses it to return expired reservations. ``sleep`` is injectable so a test can
step the loop without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]


class Periodic:
    def __init__(self, name: str, work: Callable[[], Awaitable[object]], interval: float, *,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.name = name
        self.work = work
        self.interval = interval
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Stop after the run in progress, if any (never cut off mid-way: it may hold a transaction)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.work()
            except Exception:
                log.warning("%s failed; trying again in %g s", self.name, self.interval, exc_info=True)
            await self._pause()

    async def _pause(self) -> None:
        """``sleep(interval)``, cut short by ``stop()``."""
        waits = {asyncio.ensure_future(self._sleep(self.interval)), asyncio.ensure_future(self._stopping.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
