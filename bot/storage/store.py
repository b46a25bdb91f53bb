"""The bot's one SQLite connection (aiosqlite): WAL, busy_timeout, foreign keys, file mode 600.

All statements go through one lock so that a transaction opened by one coroutine never picks up
another coroutine's statements across an ``await``. Inside ``transaction()`` the same task may
call the plain helpers freely (the lock is held for it).

Durability: ``synchronous=FULL`` for the whole connection: every commit fsyncs the WAL before it
returns, so what an answer promises (the relay's 202 comes after the outbox's group commit, a key
revocation, a saved setting) survives a power loss; in WAL mode ``NORMAL`` may lose the latest
commits. The outbox groups its commits, so the 202 path pays one fsync per batch, not per post.

A transaction never outlives its ``transaction()`` block: when ``BEGIN``, the body or ``COMMIT``
fails or is cancelled, the block waits for the statement still running in aiosqlite's thread (a
cancelled await does not stop it) and rolls back, reconnecting if even that fails, so the next
transaction starts cleanly.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from bot.storage import migrations

log = logging.getLogger(__name__)

_in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar("gatecord_in_tx", default=False)

Params = Sequence[Any] | dict[str, Any]
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
PRAGMAS = ("journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON", "synchronous=FULL")
# The write probe rewrites the newest migration row with its own value: a real write of the main
# database (and, committed, of its WAL) that changes nothing and needs no table of its own.
_PROBE = (
    "UPDATE schema_migrations SET applied_at = applied_at"
    " WHERE version = (SELECT MAX(version) FROM schema_migrations)"
)


class Store:
    def __init__(self, path: str | Path, *, migrations_dir: Traversable | None = None) -> None:
        self.path = Path(path)
        self.migrations_dir = migrations_dir  # None: the migrations shipped in the package
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._probe: asyncio.Task[str | None] | None = None
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
        self._db = await _connect(self.path)
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
        """``BEGIN IMMEDIATE`` … ``COMMIT``, holding the store lock.

        When the block returns, the commit survives a power loss. On any exception or cancellation
        (in ``BEGIN``, the body or ``COMMIT``, e.g. a deferred constraint, SQLITE_BUSY or an I/O error
        at commit) the transaction is rolled back before the lock is released, and the exception
        propagates.
        """
        if _in_transaction.get():
            yield self.db  # nested: part of the outer transaction
            return
        async with self._lock:
            token = _in_transaction.set(True)
            try:
                async with self._durable() as db:
                    yield db
            finally:
                _in_transaction.reset(token)

    @asynccontextmanager
    async def _durable(self) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction that is committed, or rolled back, before it ends; the caller holds the lock."""
        try:
            await _to_the_end(self.db.execute("BEGIN IMMEDIATE"))
            yield self.db
            await _to_the_end(self.db.execute("COMMIT"))
        except BaseException:
            await _to_the_end(self._recover())
            raise

    async def _recover(self) -> None:
        """Leave no transaction open on the connection: roll back, or reconnect when that fails."""
        db = self._db
        if db is None or not db.in_transaction:
            return
        try:
            await db.execute("ROLLBACK")
            if not db.in_transaction:
                return
        except sqlite3.Error as exc:
            log.warning("storage: ROLLBACK failed (%s); reconnecting to the database", exc)
        # Closing discards the open transaction; a fresh connection starts clean.
        try:
            await db.close()
        except sqlite3.Error:
            log.warning("storage: closing the failed connection raised; opening a new one anyway")
        self._db = None
        self._db = await _connect(self.path)

    async def write_probe(self, timeout: float = 2.0) -> str | None:
        """Commit a write that changes nothing; ``None`` when it worked within ``timeout`` s, else the reason.

        For ``/ready``: a database that can be read but not written (read-only, disk full, locked by
        another process) is not ready. Locks are waited on for at most ``timeout``; a probe stuck
        longer (a hung disk) is reported as such and keeps running, and the next call waits on it
        instead of starting another.
        """
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._write_probe(timeout / 2))  # for the lock, then for SQLite's
        done, _ = await asyncio.wait({self._probe}, timeout=timeout)
        if not done:
            return f"a test write did not finish within {timeout:g} s"
        return self._probe.result()

    async def _write_probe(self, timeout: float) -> str | None:
        try:
            async with asyncio.timeout(timeout):
                await self._lock.acquire()
        except TimeoutError:
            return f"the store was busy for {timeout:g} s"
        try:
            await self.db.execute(f"PRAGMA busy_timeout={max(1, int(timeout * 1000))}")
            try:
                async with self._durable() as db:
                    await db.execute(_PROBE)
            finally:
                if self._db is not None:
                    await self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (sqlite3.Error, RuntimeError, ValueError) as exc:  # ValueError: aiosqlite's "Connection closed"
            return str(exc) or type(exc).__name__
        finally:
            self._lock.release()
        return None

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


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    for pragma in PRAGMAS:
        await db.execute(f"PRAGMA {pragma}")
    return db


async def _to_the_end(step: Awaitable[T]) -> T:
    """Await ``step`` to its end even if the caller is cancelled meanwhile, then re-raise the cancellation.

    A cancelled ``await db.execute(...)`` does not stop the statement: aiosqlite's thread runs it
    anyway. Waiting for it keeps the connection's state (in a transaction or not) known to the
    code that holds the lock.
    """
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})  # never cancels the task, never raises its exception
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller gets
        raise asyncio.CancelledError
    return task.result()


def _create_private_file(path: Path) -> None:
    if str(path) == ":memory:":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
