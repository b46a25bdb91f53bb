"""A FIFO admission queue for image generations that can tell each waiter its position.

``asyncio.Semaphore`` cannot say "you are 3rd in line"; this can, and it is strictly first come,
first served (a new arrival never overtakes a waiter).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Ticket:
    """One place in the queue. ``position`` is 0 once the ticket holds a slot, else 1, 2, … in line."""

    __slots__ = ("_queue", "_granted", "_left")

    def __init__(self, queue: FairQueue) -> None:
        self._queue = queue
        self._granted = asyncio.Event()
        self._left = False

    @property
    def granted(self) -> bool:
        return self._granted.is_set()

    @property
    def position(self) -> int:
        if self._granted.is_set():
            return 0
        try:
            return self._queue._waiting.index(self) + 1
        except ValueError:
            return 0

    async def wait(self) -> None:
        await self._granted.wait()


class FairQueue:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a queue needs at least one slot")
        self.slots = slots
        self._running = 0
        self._waiting: deque[Ticket] = deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def enter(self) -> Ticket:
        """Join the line; the ticket is granted at once when a slot is free and nobody waits."""
        ticket = Ticket(self)
        if self._running < self.slots and not self._waiting:
            self._running += 1
            ticket._granted.set()
        else:
            self._waiting.append(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """Give the slot back (or the place in line); idempotent."""
        if ticket._left:
            return
        ticket._left = True
        if ticket._granted.is_set():
            self._running -= 1
            while self._waiting and self._running < self.slots:
                nxt = self._waiting.popleft()
                self._running += 1
                nxt._granted.set()
        else:
            try:
                self._waiting.remove(ticket)
            except ValueError:
                pass

    @asynccontextmanager
    async def slot(self, ticket: Ticket | None = None) -> AsyncIterator[Ticket]:
        """``async with queue.slot() as t:`` — waits for a slot; leaving (even by cancellation) frees it."""
        ticket = ticket or self.enter()
        try:
            await ticket.wait()
            yield ticket
        finally:
            self.leave(ticket)
