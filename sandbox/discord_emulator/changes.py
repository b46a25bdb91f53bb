"""A change signal: state changes wake waiters, which re-check their predicates.

Waiters on the whole emulator (``wait_for``) are woken by every change. Waiters on one topic
(``wait_for(..., topic=key)``, e.g. one interaction's acknowledgement) are woken only by
``changed(key)`` — and, like every waiter, at least every RECHECK_INTERVAL_S — so hundreds of
per-interaction waiters do not all re-run their predicates on every request the emulator serves.
Waking is cheap: one future per waiter, no task or Event per wake-up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Hashable, Optional, TypeVar

T = TypeVar("T")


# Predicates may read state the emulator does not own (the bot's cache or database, another
# emulator); waiters re-check at least this often even when nothing here changed.
RECHECK_INTERVAL_S = 0.25


def _wake(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class ChangeSignal:
    """Synchronous `changed()`, asynchronous `wait_for(predicate)` woken by changes."""

    def __init__(self) -> None:
        self.version = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._topics: dict[Hashable, set[asyncio.Future[None]]] = {}
        self._delayed: dict[float, tuple[asyncio.TimerHandle, float]] = {}
        self._to_wake: list[asyncio.Future[None]] = []
        self._wake_scheduled = False

    def changed(self, topic: Optional[Hashable] = None) -> None:
        """Wake every whole-emulator waiter, and the waiters on ``topic`` if given.

        Waiters resume a couple of loop turns later, as they did when every waiter sat in its own
        ``asyncio.wait_for`` task: the request being handled gets to write its response (and the
        bot to read it) before a test that was waiting for this change sends the next event.
        """
        self.version += 1
        if self._waiters:
            self._to_wake.extend(self._waiters)
            self._waiters = set()
        if topic is not None:
            self._to_wake.extend(self._topics.pop(topic, ()))
        if self._to_wake and not self._wake_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside the loop: wake at once
                self._wake_now()
                return
            self._wake_scheduled = True
            loop.call_soon(self._wake_soon)

    def _wake_soon(self) -> None:
        asyncio.get_running_loop().call_soon(self._wake_now)

    def _wake_now(self) -> None:
        self._wake_scheduled = False
        to_wake, self._to_wake = self._to_wake, []
        for fut in to_wake:
            if not fut.done():
                fut.set_result(None)

    def changed_later(self, delay: float) -> None:
        """Call `changed()` about ``delay`` seconds from now.

        Coalesced per delay: while a wake-up for this delay is pending, a later request only moves
        the next one to (its time + delay), so a burst of requests costs one timer, not one each,
        and every request is still followed by a wake-up at least ``delay`` after it.
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._delayed.get(delay)
        if pending is not None:
            handle, _ = pending
            self._delayed[delay] = (handle, due)
            return
        self._delayed[delay] = (loop.call_at(due, self._fire_delayed, delay), due)

    def _fire_delayed(self, delay: float) -> None:
        handle, due = self._delayed.pop(delay)
        loop = asyncio.get_running_loop()
        if due > loop.time() + 0.001:  # asked again meanwhile: wake again then
            self._delayed[delay] = (loop.call_at(due, self._fire_delayed, delay), due)
        self.changed()

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, *, topic: Optional[Hashable] = None) -> T:
        """Wait until `predicate()` returns something truthy and return it.

        With ``topic``, only `changed(topic)` (and the periodic re-check) wakes this waiter.
        Raises asyncio.TimeoutError after `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"condition not met within {timeout}s")
            fut: asyncio.Future[None] = loop.create_future()
            waiters = self._waiters if topic is None else self._topics.setdefault(topic, set())
            waiters.add(fut)
            timer = loop.call_later(min(remaining, RECHECK_INTERVAL_S), _wake, fut)
            try:
                await fut
            finally:
                timer.cancel()
                if not fut.done():  # cancelled while waiting
                    fut.cancel()
                self._forget(fut, topic)

    def _forget(self, fut: "asyncio.Future[None]", topic: Optional[Hashable]) -> None:
        """Drop a waiter woken by its re-check timer (a change has already dropped the others)."""
        if topic is None:
            self._waiters.discard(fut)
            return
        waiters = self._topics.get(topic)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._topics[topic]
