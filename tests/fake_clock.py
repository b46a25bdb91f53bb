"""A clock that moves only when the test moves it (for code that takes a ``Clock``: now() + sleep())."""

from __future__ import annotations

import asyncio
import heapq
import itertools

from tests.waiting import Changes


class FakeClock:
    """``now()`` is what the test set; ``sleep()`` returns when ``advance`` passes its deadline.

    Every new sleeper pokes ``changes``, so a test can wait until the code under test is asleep.
    """

    def __init__(self, changes: Changes | None = None, start: float = 0.0) -> None:
        self.changes = changes if changes is not None else Changes()
        self._now = start
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._seq), fut))
        self.changes.changed()
        await fut

    @property
    def deadlines(self) -> list[float]:
        """When the current sleepers wake up (sleeps that were cancelled are left out)."""
        return sorted(at for at, _, fut in self._sleepers if not fut.done())

    def advance(self, seconds: float) -> int:
        """Move the clock forward; wake the sleepers that are due. Returns how many were woken."""
        return self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> int:
        if when < self._now:
            raise ValueError("a monotonic clock does not go back")
        self._now = when
        woken = 0
        while self._sleepers and self._sleepers[0][0] <= when:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
                woken += 1
        return woken
