"""Admission gate for gateway work: a per-conversation lock, then a global concurrency slot.

``admit(key)`` is synchronous and answers at once: it either hands out a ``Ticket`` (a place in the
line) or raises ``Busy`` when ``max_concurrency + max_queue`` requests are already running or
waiting. ``async with ticket:`` then waits for the conversation's lock (turns of one conversation
run one after the other) and a global slot, and frees both on exit. A ticket that is never entered
must be ``cancel()``-ed to give its place back (``async with`` does this on its own).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType

from bot.rendering.user_facing import UserFacingError

__all__ = ["Admission", "Busy", "Ticket"]


class Busy(UserFacingError):
    """Too many requests are running or waiting; the member is told at once."""

    code = "busy"

    def __init__(self, running: int, waiting: int) -> None:
        super().__init__(f"busy: {running} running, {waiting} waiting")
        self.running = running
        self.waiting = waiting

    def user_message(self) -> str:
        return "I'm answering too many requests right now — please try again in a few seconds."


@dataclass
class _ConvLock:
    lock: asyncio.Lock
    users: int = 0


class Ticket:
    """One admitted request. Enter it to wait for the conversation lock and a global slot."""

    __slots__ = ("_gate", "key", "_state", "_conv")

    def __init__(self, gate: Admission, key: str) -> None:
        self._gate = gate
        self.key = key
        self._state = "waiting"  # waiting → running → done
        self._conv: _ConvLock | None = None

    @property
    def running(self) -> bool:
        return self._state == "running"

    async def __aenter__(self) -> Ticket:
        gate = self._gate
        if self._state != "waiting":
            raise RuntimeError("a ticket can be entered once")
        conv = gate._locks.get(self.key)
        if conv is None:
            conv = gate._locks[self.key] = _ConvLock(asyncio.Lock())
        conv.users += 1
        self._conv = conv
        try:
            await conv.lock.acquire()
            try:
                await gate._slots.acquire()
            except BaseException:
                conv.lock.release()
                raise
        except BaseException:
            self._finish()
            raise
        self._state = "running"
        gate._waiting -= 1
        gate._running += 1
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state == "running":
            self._gate._slots.release()
            assert self._conv is not None
            self._conv.lock.release()
            self._gate._running -= 1
            self._state = "done"
            self._drop_conv()
            self._gate._note_idle()

    def cancel(self) -> None:
        """Give the place back without running (e.g. the interaction could not be acknowledged)."""
        if self._state == "waiting" and self._conv is None:
            self._finish()

    def _finish(self) -> None:
        if self._state == "waiting":
            self._gate._waiting -= 1
        self._state = "done"
        self._drop_conv()
        self._gate._note_idle()

    def _drop_conv(self) -> None:
        conv, self._conv = self._conv, None
        if conv is not None:
            conv.users -= 1
            if conv.users == 0 and self._gate._locks.get(self.key) is conv:
                del self._gate._locks[self.key]


class Admission:
    """At most ``max_concurrency`` running and ``max_queue`` waiting; more are refused with ``Busy``."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        if max_concurrency < 1 or max_queue < 0:
            raise ValueError("max_concurrency must be ≥ 1 and max_queue ≥ 0")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._slots = asyncio.Semaphore(max_concurrency)
        self._locks: dict[str, _ConvLock] = {}
        self._running = 0
        self._waiting = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    def admit(self, key: str) -> Ticket:
        """A place in line for conversation ``key``, or ``Busy`` at once when the line is full."""
        if self._running + self._waiting >= self.max_concurrency + self.max_queue:
            raise Busy(self._running, self._waiting)
        self._waiting += 1
        self._idle.clear()
        return Ticket(self, key)

    async def wait_idle(self) -> None:
        """Return once nothing is running or waiting."""
        await self._idle.wait()

    def _note_idle(self) -> None:
        if self._running == 0 and self._waiting == 0:
            self._idle.set()
