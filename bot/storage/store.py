"""The bot's database: SQLite (one file, one process) or PostgreSQL (many processes), one interface.

``Store(path)`` opens SQLite, ``Store(url="postgresql://…")`` PostgreSQL; ``Store.from_settings`` picks by
``[storage] url``. Services write SQL that both accept (see ``sqltext``) and use:

- ``await store.run(body)``: ``body(tx)`` runs whole in one transaction (hot paths: one hop, group commit);
- ``async with store.transaction() as tx``: a transaction whose body awaits other things;
- ``execute`` / ``fetchone`` / ``fetchall`` / ``fetchval`` / ``executemany``: one statement, committed
  (inside a ``transaction()`` of the same task they join it);
- ``async with store.lock(name) as held``: periodic work that one process at a time does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection

from bot.storage import migrations
from bot.storage.errors import DatabaseTooNew, MigrationError, StorageError
from bot.storage.postgres_backend import PostgresBackend, lock_key, safe_url
from bot.storage.records import Row
from bot.storage.sqlite_backend import SqliteBackend
from bot.storage.sqltext import Params
from bot.storage.tx import Dialect, SyncTx, Tx

if TYPE_CHECKING:
    from bot.app.settings import StorageSettings

__all__ = ["Store", "StorageError", "Row", "Tx", "SyncTx"]

T = TypeVar("T")
log = logging.getLogger(__name__)

#: the advisory lock a PostgreSQL migration runs under
MIGRATION_LOCK = "gatecord:migrate"

# The write probe rewrites the schema version with its own value: a real write that changes nothing.
_PROBE = "UPDATE alembic_version SET version_num = version_num"


class Store:
    def __init__(self, path: str | Path | None = None, *, url: str | None = None, pool_size: int = 10) -> None:
        if (path is None) == (url is None):
            raise ValueError("give a SQLite path or a PostgreSQL url, not both")
        self.url = url
        self.path: Path | None = None if path is None else Path(path)
        self._backend: SqliteBackend | PostgresBackend
        if url is not None:
            self._backend = PostgresBackend(url, pool_size=pool_size)
        else:
            assert self.path is not None
            self._backend = SqliteBackend(self.path)
        self.schema_version = 0
        self._probe: asyncio.Task[str | None] | None = None

    @classmethod
    def from_settings(cls, storage: StorageSettings) -> Store:
        if storage.url:
            return cls(url=storage.url.get_secret_value(), pool_size=storage.pool_size)
        return cls(storage.path)

    @property
    def dialect(self) -> Dialect:
        return self._backend.dialect

    def describe(self) -> str:
        """Where the data lives, for messages (never a password)."""
        if self.url is not None:
            return f"database {safe_url(self.url)}"
        return f"database {self.path}"

    @property
    def is_open(self) -> bool:
        return self._backend.is_open

    def in_transaction(self) -> bool:
        """True while the connection (SQLite) or this task (PostgreSQL) is inside a transaction."""
        return self._backend.in_transaction()

    async def open(self, *, migrate: bool = True) -> int:
        """Connect, migrate (or only check the version); return the schema version."""
        if self._backend.is_open:
            return self.schema_version
        await self._backend.open()
        try:
            self.schema_version = await self._migrate(apply=migrate)
        except BaseException:
            await self.close()
            raise
        return self.schema_version

    async def _migrate(self, *, apply: bool) -> int:
        where = str(self.path) if self.path is not None else safe_url(self.url or "")
        if isinstance(self._backend, SqliteBackend):
            # a connection of its own (pysqlite through SQLAlchemy, as Alembic needs), in a thread
            return await asyncio.to_thread(_migrate_sqlite, self._backend.path, apply)

        def run(connection: Any) -> int:
            if apply:
                with _migration_lock(connection, where):  # many processes may start at once
                    return migrations.upgrade(connection, where)
            return _usable_version(connection, where)

        try:
            async with self._backend.engine.connect() as conn:
                return await conn.run_sync(run)
        except MigrationError:
            raise
        except Exception as exc:  # noqa: BLE001 - the driver's failure, as one line
            raise MigrationError(f"{self.describe()} could not be migrated ({exc})") from None

    async def close(self) -> None:
        await self._backend.close()

    # -- transactions -----------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One transaction; on any exception or cancellation it is rolled back and the exception propagates."""
        async with self._backend.transaction() as tx:
            yield tx

    async def run(self, body: Callable[[SyncTx], T]) -> T:
        """``body(tx)`` in one transaction, committed (durably) before this returns; its exception rolls it back."""
        return await self._backend.run(body)

    # -- one statement ----------------------------------------------------------------------------

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        current = self._backend.current()
        if current is not None:
            return await current.execute(sql, params)
        return await self.run(lambda tx: tx.execute(sql, params))

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        listed = list(rows)
        current = self._backend.current()
        if current is not None:
            await current.executemany(sql, listed)
            return
        await self.run(lambda tx: tx.executemany(sql, listed))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        current = self._backend.current()
        if current is not None:
            return await current.fetchone(sql, params)
        return await self.run(lambda tx: tx.fetchone(sql, params))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        current = self._backend.current()
        if current is not None:
            return await current.fetchall(sql, params)
        return await self.run(lambda tx: tx.fetchall(sql, params))

    async def fetchval(self, sql: str, params: Params = (), default: Any = None) -> Any:
        row = await self.fetchone(sql, params)
        return default if row is None else row[0]

    # -- health and coordination ------------------------------------------------------------------

    async def write_probe(self, timeout: float = 2.0) -> str | None:
        """Commit a write that changes nothing; ``None`` when it worked within ``timeout`` s, else the reason.

        For ``/ready``: a database that can be read but not written (read-only, disk full, locked by
        another process, unreachable) is not ready. A probe stuck longer is reported as such and keeps
        running; the next call waits on it instead of starting another.
        """
        if not self.is_open:
            return "the store is not open"
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._backend.probe(_PROBE, timeout / 2))  # locks, then the answer
        done, _ = await asyncio.wait({self._probe}, timeout=timeout)
        if not done:
            return f"a test write did not finish within {timeout:g} s"
        return self._probe.result()

    async def ping(self) -> bool:
        try:
            return await self.fetchval("SELECT 1") == 1
        except Exception:  # noqa: BLE001
            return False

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[bool]:
        """Yield True when this process may do the periodic work ``name`` now (no other process is)."""
        async with self._backend.lock(name) as held:
            yield held


@contextmanager
def _migration_lock(connection: Connection, where: str) -> Iterator[None]:
    """PostgreSQL: one process at a time migrates (a session advisory lock; Alembic takes none there).
    The others wait here, then find the schema up to date. (SQLite: ``BEGIN IMMEDIATE`` serialises.)"""
    key = {"k": lock_key(MIGRATION_LOCK)}
    if not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), key).scalar():
        log.info("%s: another process is migrating it; waiting for it to finish", where)
        connection.execute(text("SELECT pg_advisory_lock(:k)"), key)
    connection.commit()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a lost connection releases the lock by itself
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), key)
            connection.commit()


def _migrate_sqlite(path: Path, apply: bool) -> int:
    engine = migrations.sqlite_engine(path)
    try:
        with engine.connect() as connection:
            if apply:
                return migrations.upgrade(connection, str(path))
            return _usable_version(connection, str(path))
    finally:
        engine.dispose()


def _usable_version(connection: Any, where: str) -> int:
    """The database's schema version, refused when it is newer than the code (opened without migrating)."""
    version = migrations.current_version(connection)
    latest = migrations.latest_version()
    if version > latest:
        raise DatabaseTooNew(version, latest, where)
    return version
