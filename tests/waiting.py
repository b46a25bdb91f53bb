"""Waiting on conditions in tests without sleeping: a change signal that test doubles poke.

``Changes.wait_until(check)`` re-checks ``check`` (sync or async) after every ``changed()`` and
returns its first truthy result; nothing is polled on a timer, so a test waits exactly as long as
the thing it waits for. For conditions on the database (a row, or an API answer built from one):
``SignallingStore`` pokes its ``changes`` after every write, and ``store_writes`` makes every
``Store`` do so (for stores the code under test builds itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
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


class _WriteWatch:
    """A ``SyncTx`` that notes whether its body wrote (anything but a SELECT)."""

    def __init__(self, tx: Any) -> None:
        self._tx = tx
        self.dialect = tx.dialect
        self.wrote = False

    def _see(self, sql: str) -> None:
        if not sql.lstrip().upper().startswith(("SELECT", "PRAGMA")):
            self.wrote = True

    def execute(self, sql: str, params: Any = ()) -> int:
        self.wrote = True
        return int(self._tx.execute(sql, params))

    def executemany(self, sql: str, rows: Any) -> None:
        self.wrote = True
        self._tx.executemany(sql, rows)

    def fetchone(self, sql: str, params: Any = ()) -> Any:
        self._see(sql)
        return self._tx.fetchone(sql, params)

    def fetchall(self, sql: str, params: Any = ()) -> Any:
        self._see(sql)
        return self._tx.fetchall(sql, params)

    def fetchval(self, sql: str, params: Any = (), default: Any = None) -> Any:
        self._see(sql)
        return self._tx.fetchval(sql, params, default)


def _signalled_writes(changes_of: Callable[[Store], Changes]) -> dict[str, Any]:
    """``Store``'s write methods, each poking ``changes_of(store)`` once its write is done."""
    execute, executemany, transaction, run = Store.execute, Store.executemany, Store.transaction, Store.run

    async def signalling_execute(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return await execute(self, *args, **kwargs)
        finally:
            changes_of(self).changed()

    async def signalling_executemany(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return await executemany(self, *args, **kwargs)
        finally:
            changes_of(self).changed()

    @contextlib.asynccontextmanager
    async def signalling_transaction(self: Store, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async with transaction(self, *args, **kwargs) as db:
                yield db
        finally:
            changes_of(self).changed()  # after COMMIT (or ROLLBACK)

    async def signalling_run(self: Store, body: Callable[[Any], T]) -> T:
        watches: list[_WriteWatch] = []

        def watched(tx: Any) -> T:
            watch = _WriteWatch(tx)
            watches.append(watch)
            return body(watch)

        try:
            return await run(self, watched)
        finally:
            if not watches or any(w.wrote for w in watches):  # a body that only read changes nothing
                changes_of(self).changed()  # after COMMIT (or ROLLBACK)

    return {"execute": signalling_execute, "executemany": signalling_executemany,
            "transaction": signalling_transaction, "run": signalling_run}


class SignallingStore(Store):
    """A ``Store`` that pokes its ``changes`` after every write."""

    def __init__(self, path: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.changes = Changes()


for _name, _method in _signalled_writes(lambda store: store.changes).items():  # type: ignore[attr-defined]
    setattr(SignallingStore, _name, _method)


def store_writes(monkeypatch: pytest.MonkeyPatch) -> Changes:
    """A ``Changes`` poked after every write of every ``Store`` (for stores the code under test builds)."""
    changes = Changes()
    for name, method in _signalled_writes(lambda _store: changes).items():
        monkeypatch.setattr(Store, name, method)
    return changes
