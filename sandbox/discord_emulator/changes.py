"""A change signal: every state change wakes every waiter, which re-checks its predicate."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, TypeVar

T = TypeVar("T")


# Predicates may read state the emulator does not own (the bot's cache or database, another
# emulator); waiters re-check at least this often even when nothing here changed.
RECHECK_INTERVAL_S = 0.25


class ChangeSignal:
    """Synchronous `changed()`, asynchronous `wait_for(predicate)` woken by every change."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.version = 0

    def changed(self) -> None:
        self.version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until `predicate()` returns something truthy and return it.

        Raises asyncio.TimeoutError after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            event = self._event
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"condition not met within {timeout}s")
            try:
                await asyncio.wait_for(event.wait(), min(remaining, RECHECK_INTERVAL_S))
            except asyncio.TimeoutError:
                pass


