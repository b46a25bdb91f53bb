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

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.work()
            except Exception:
                log.warning("%s failed; trying again in %g s", self.name, self.interval, exc_info=True)
            await self._sleep(self.interval)
