"""The bot's one SQLite connection (aiosqlite): WAL, busy_timeout, foreign keys, file mode 600.

All statements go through one lock so that a transaction opened by one coroutine never picks up
another coroutine's statements across an ``await``. Inside ``transaction()`` the same task may
call the plain helpers freely (the lock is held for it).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, cast

import aiosqlite

from bot.storage import migrations

_in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar("gatecord_in_tx", default=False)

Params = Sequence[Any] | dict[str, Any]


class Store:
    def __init__(self, path: str | Path, *, migrations_dir: Traversable | None = None) -> None:
        self.path = Path(path)
        self.migrations_dir = migrations_dir  # None: the migrations shipped in the package
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.schema_version = 0

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self, *, migrate: bool = True) -> int:
        """Open (creating with mode 600 if needed), set pragmas, migrate; return the schema version."""
        if self._db is not None:
            return self.schema_version
        await asyncio.to_thread(_create_private_file, self.path)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        for pragma in ("journal_mode=WAL", "busy_timeout=5000", "foreign_keys=ON", "synchronous=NORMAL"):
            await self._db.execute(f"PRAGMA {pragma}")
        try:
            if migrate:
                self.schema_version = await migrations.migrate(self._db, self.migrations_dir)
            else:
                self.schema_version = await migrations.current_version(self._db)
        except migrations.DatabaseTooNew as exc:
            await self.close()
            raise migrations.DatabaseTooNew(exc.version, exc.latest, self.path) from None
        except BaseException:
            await self.close()
            raise
        return self.schema_version

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception), holding the store lock."""
        if _in_transaction.get():
            yield self.db  # nested: part of the outer transaction
            return
        async with self._lock:
            token = _in_transaction.set(True)
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    await self.db.execute("ROLLBACK")
                    raise
                else:
                    await self.db.execute("COMMIT")
            finally:
                _in_transaction.reset(token)

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[aiosqlite.Connection]:
        if _in_transaction.get():
            yield self.db
        else:
            async with self._lock:
                yield self.db

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows changed (or lastrowid for an INSERT)."""
        async with self._locked() as db:
            async with db.execute(sql, params) as cur:
                if sql.lstrip()[:6].upper() == "INSERT":
                    # sqlite3 sets lastrowid on every INSERT; aiosqlite only types it Optional
                    return cast(int, cur.lastrowid)
                return cur.rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        async with self._locked() as db:
            await db.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        async with self._locked() as db:
            async with db.execute(sql, params) as cur:
                return await cur.fetchone()

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        async with self._locked() as db:
            async with db.execute(sql, params) as cur:
                return list(await cur.fetchall())

    async def fetchval(self, sql: str, params: Params = (), default: Any = None) -> Any:
        row = await self.fetchone(sql, params)
        return default if row is None else row[0]

    async def ping(self) -> bool:
        try:
            return await self.fetchval("SELECT 1") == 1
        except Exception:
            return False


def _create_private_file(path: Path) -> None:
    if str(path) == ":memory:":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
