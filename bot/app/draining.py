"""Draining on shutdown: wait for the work in progress (bounded), then cut off what is left.

The services (chat answers, image jobs) each say which tasks are in progress; ``drain_tasks``
waits until none is left or the time is up, re-reading the set as it goes (a turn admitted just
before the bot stopped accepting starts a task a moment later), then cancels the rest, whose own
clean-up gives their budget holds back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bot.rendering.user_facing import UserFacingError

__all__ = ["RESTARTING_MESSAGE", "Drained", "Restarting", "drain_tasks"]

#: what a member is told when they ask for something new while the bot drains
RESTARTING_MESSAGE = "The bot is restarting — please try again in a minute."
#: after cancelling, how long the cut-off tasks get to unwind (release their budgets)
CANCEL_GRACE = 2.0


class Restarting(UserFacingError):
    """New work is refused: the bot is stopping (it drains what is in progress)."""

    code = "restarting"

    def user_message(self) -> str:
        return RESTARTING_MESSAGE


@dataclass(frozen=True)
class Drained:
    """What a drain did: tasks that finished within the time, tasks that were cut off."""

    finished: int = 0
    cancelled: int = 0

    def __add__(self, other: Drained) -> Drained:
        return Drained(self.finished + other.finished, self.cancelled + other.cancelled)


async def drain_tasks(in_progress: Callable[[], Iterable[asyncio.Task[Any]]], timeout: float) -> Drained:
    """Wait up to ``timeout`` s for every task ``in_progress()`` names to finish, then cancel the rest."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    deadline = loop.time() + max(timeout, 0.0)

    def pending() -> set[asyncio.Task[Any]]:
        return {t for t in in_progress() if not t.done() and t is not me}

    seen: set[asyncio.Task[Any]] = set()
    while True:
        waiting = pending()
        seen |= waiting
        remaining = deadline - loop.time()
        if not waiting or remaining <= 0:
            break
        await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    left = pending()
    seen |= left
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=CANCEL_GRACE)
    return Drained(finished=len(seen - left), cancelled=len(left))
