"""The two shapes of a transaction the services write against, on either backend.

- ``Tx`` (async): ``async with store.transaction() as tx: await tx.execute(…)`` — for bodies that
  await other things between statements.
- ``SyncTx`` (plain calls): ``await store.run(body)`` with ``def body(tx): tx.execute(…)`` — the whole
  body runs as one unit: on SQLite in the database thread with one hop (and shares a group commit
  with its neighbours), on PostgreSQL in SQLAlchemy's greenlet over asyncpg. Hot paths use this.

``execute`` returns the number of rows changed. Use ``INSERT … RETURNING`` with ``fetchval`` to
learn a new row's id (both backends support it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, Protocol

from bot.storage.records import Row
from bot.storage.sqltext import Params

Dialect = Literal["sqlite", "postgresql"]


class Tx(Protocol):
    dialect: Dialect

    async def execute(self, sql: str, params: Params = ()) -> int: ...

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchval(self, sql: str, params: Params = (), default: Any = None) -> Any: ...


class SyncTx(Protocol):
    dialect: Dialect

    def execute(self, sql: str, params: Params = ()) -> int: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    def fetchval(self, sql: str, params: Params = (), default: Any = None) -> Any: ...


class FetchvalFromFetchone:
    """``fetchval`` for a transaction class that has ``fetchone``: the first column of the first row."""

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        raise NotImplementedError

    def fetchval(self, sql: str, params: Params = (), default: Any = None) -> Any:
        row = self.fetchone(sql, params)
        return default if row is None else row[0]


class AsyncFetchvalFromFetchone:
    """The same for an async transaction class."""

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        raise NotImplementedError

    async def fetchval(self, sql: str, params: Params = (), default: Any = None) -> Any:
        row = await self.fetchone(sql, params)
        return default if row is None else row[0]


def for_update(dialect: Dialect, *, skip_locked: bool = False) -> str:
    """The row-locking suffix of a SELECT: PostgreSQL locks the rows; SQLite's one writer needs none."""
    if dialect != "postgresql":
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
