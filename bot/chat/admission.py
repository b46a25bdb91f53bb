"""Admission gate for gateway work: a per-conversation lock, then a global concurrency slot.

``admit(key)`` is synchronous and answers at once: it either hands out a ``Ticket`` (a place in the
line) or raises ``Busy`` when ``max_concurrency + max_queue`` requests are already running or
waiting. ``async with ticket:`` then waits for the conversation's lock (turns of one conversation
run one after the other) and a global slot, and frees both on exit. A ticket that is never entered
must be ``cancel()``-ed to give its place back (``async with`` does this on its own).

``close()`` starts the bot's drain: from then on ``admit`` refuses with ``Restarting`` (a ``Busy``,
so every caller already tells the member), while tickets handed out before run to the end.
``holders()`` are the tasks holding a ticket, so the drain also waits for a turn admitted a moment
before that has not started its answer yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType

from bot.app.draining import RESTARTING_MESSAGE
from bot.rendering.user_facing import UserFacingError

__all__ = ["Admission", "Busy", "Restarting", "Ticket"]


class Busy(UserFacingError):
    """Too many requests are running or waiting; the member is told at once."""

    code = "busy"

    def __init__(self, running: int, waiting: int) -> None:
        super().__init__(f"busy: {running} running, {waiting} waiting")
        self.running = running
        self.waiting = waiting

    def user_message(self) -> str:
        return "I'm answering too many requests right now — please try again in a few seconds."


class Restarting(Busy):
    """The bot is draining before it stops: new turns are refused, with a clear reason."""

    code = "restarting"

    def __init__(self) -> None:
        UserFacingError.__init__(self, "restarting: new turns are refused while the bot drains")
        self.running = 0
        self.waiting = 0

    def user_message(self) -> str:
        return RESTARTING_MESSAGE


@dataclass
class _ConvLock:
    lock: asyncio.Lock
    users: int = 0


class Ticket:
    """One admitted request. Enter it to wait for the conversation lock and a global slot."""

    __slots__ = ("_gate", "key", "_state", "_conv", "task")

    def __init__(self, gate: Admission, key: str) -> None:
        self._gate = gate
        self.key = key
        self._state = "waiting"  # waiting → running → done
        self._conv: _ConvLock | None = None
        #: the task that asked for the ticket (what the drain waits for)
        self.task: asyncio.Task[object] | None = _current_task()

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
            self._gate._holders.discard(self)
            self._drop_conv()
            self._gate._note_idle()

    def rekey(self, key: str) -> None:
        """Move a ticket not entered yet to conversation ``key`` (a thread opened for the turn), keeping
        its place in line; entering then waits for that conversation's lock."""
        if self._state != "waiting" or self._conv is not None:
            raise RuntimeError("only a ticket not entered yet can change conversation")
        self.key = key

    def cancel(self) -> None:
        """Give the place back without running (e.g. the interaction could not be acknowledged)."""
        if self._state == "waiting" and self._conv is None:
            self._finish()

    def _finish(self) -> None:
        if self._state == "waiting":
            self._gate._waiting -= 1
        self._state = "done"
        self._gate._holders.discard(self)
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
        self._holders: set[Ticket] = set()
        self._closed = False

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Refuse every new ticket (``Restarting``); tickets already handed out are unaffected."""
        self._closed = True

    def holders(self) -> set[asyncio.Task[object]]:
        """The unfinished tasks holding a ticket (admitted, waiting or running)."""
        return {t.task for t in self._holders if t.task is not None and not t.task.done()}

    def admit(self, key: str) -> Ticket:
        """A place in line for conversation ``key``; ``Restarting`` once closed, ``Busy`` at once when
        the line is full."""
        if self._closed:
            raise Restarting()
        if self._running + self._waiting >= self.max_concurrency + self.max_queue:
            raise Busy(self._running, self._waiting)
        self._waiting += 1
        self._idle.clear()
        ticket = Ticket(self, key)
        self._holders.add(ticket)
        return ticket

    async def wait_idle(self) -> None:
        """Return once nothing is running or waiting."""
        await self._idle.wait()

    def _note_idle(self) -> None:
        if self._running == 0 and self._waiting == 0:
            self._idle.set()


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop (a synchronous caller)
        return None
