"""Waiting on conditions in tests without sleeping: a change signal that test doubles poke.

``Changes.wait_until(check)`` re-checks ``check`` (sync or async) after every ``changed()`` and
returns its first truthy result; nothing is polled on a timer, so a test waits exactly as long as
the thing it waits for. ``store_writes`` pokes a ``Changes`` after every write the bot's SQLite
store makes, for tests whose condition is a row in the database (or an API answer built from one).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from bot.storage.store import Store

T = TypeVar("T")


class Changes:
    """A version counter whose waiters re-check their condition on every change."""

    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def changed(self) -> None:
        self.version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_until(
        self, check: Callable[[], T | Awaitable[T]], timeout: float = 10.0, what: str = "the condition"
    ) -> T:
        """``check()``'s first truthy result; AssertionError naming ``what`` if none within ``timeout``.

        The timeout only turns a hang into a failure: nothing here depends on how fast things run.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self._event  # taken before checking: a change during an async check is not missed
                    result = check()
                    if inspect.isawaitable(result):
                        result = await result
                    if result:
                        return result  # type: ignore[return-value]
                    await event.wait()
        except TimeoutError:
            raise AssertionError(f"{what} not reached within {timeout} s") from None


def store_writes(monkeypatch: pytest.MonkeyPatch) -> Changes:
    """A ``Changes`` poked after every write of every ``Store`` (execute, executemany, transaction)."""
    changes = Changes()
    execute, executemany, transaction = Store.execute, Store.executemany, Store.transaction

    async def signalling_execute(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return await execute(self, *args, **kwargs)
        finally:
            changes.changed()

    async def signalling_executemany(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return await executemany(self, *args, **kwargs)
        finally:
            changes.changed()

    @contextlib.asynccontextmanager
    async def signalling_transaction(self: Store, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async with transaction(self, *args, **kwargs) as db:
                yield db
        finally:
            changes.changed()

    monkeypatch.setattr(Store, "execute", signalling_execute)
    monkeypatch.setattr(Store, "executemany", signalling_executemany)
    monkeypatch.setattr(Store, "transaction", signalling_transaction)
    return changes
