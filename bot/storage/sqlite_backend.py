"""SQLite: one connection, owned by one thread; every statement runs there.

Why not SQLAlchemy's async engine over aiosqlite: each statement there costs a hop to aiosqlite's thread
and back, and a budget reservation is five statements; measured on this machine (bench/quota.py) that
was 840 reservations/s against 5,000+ with whole transaction bodies run in the database thread with one
hop (``run()``), whose commits are shared by every body queued meanwhile (group commit: one fsync for
the batch, each body in its own SAVEPOINT so one failing body does not undo the others). SQLAlchemy
still defines the schema and runs the migrations (Alembic) for this file too.

Durability: ``synchronous=FULL``: a commit has reached the disk when ``run()`` or ``transaction()``
returns, so what an answer promises (the relay's 202, a saved setting) survives a power loss.
A transaction never outlives its block: when ``BEGIN``, the body or ``COMMIT`` fails or is
cancelled, the block waits for the statement still running in the thread and rolls back,
reconnecting if even that fails, so the next transaction starts cleanly.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bot.storage.errors import IntegrityError, StorageError
from bot.storage.extensions import load_sqlite_vec
from bot.storage.records import Row
from bot.storage.sqltext import Params, log_statement
from bot.storage.tx import Dialect, FetchvalFromFetchone

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
PRAGMAS = ("journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON", "synchronous=FULL")
MAX_BATCH = 256  # bodies sharing one commit

_current: contextvars.ContextVar[SqliteTx | None] = contextvars.ContextVar("gatecord_sqlite_tx", default=None)


def _storage_error(exc: sqlite3.Error) -> StorageError:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(str(exc))
    return StorageError(str(exc) or type(exc).__name__)


class SqliteSyncTx(FetchvalFromFetchone):
    """Statements on the connection, called in the database thread."""

    dialect: Dialect = "sqlite"

    def __init__(self, backend: SqliteBackend) -> None:
        self._backend = backend

    def _cursor(self, sql: str, params: Params) -> sqlite3.Cursor:
        log_statement(sql)
        try:
            return self._backend.connection.execute(sql, params)
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._cursor(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        log_statement(sql)
        try:
            self._backend.connection.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._cursor(sql, params).fetchone()
        return row

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(self._cursor(sql, params).fetchall())


class SqliteTx:
    """The async face of a transaction: each statement is one hop to the database thread."""

    dialect: Dialect = "sqlite"

    def __init__(self, backend: SqliteBackend) -> None:
        self._backend = backend
        self.sync = SqliteSyncTx(backend)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._backend.call(self.sync.execute, sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._backend.call(self.sync.executemany, sql, list(rows))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._backend.call(self.sync.fetchone, sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._backend.call(self.sync.fetchall, sql, params)

    async def fetchval(self, sql: str, params: Params = (), default: Any = None) -> Any:
        return await self._backend.call(self.sync.fetchval, sql, params, default)


_Job = tuple[Callable[[SqliteSyncTx], Any], "asyncio.Future[Any]"]


class SqliteBackend:
    dialect: Dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self.vector_problem: str | None = None  # why sqlite-vec is not loaded into the connection, if it is not
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._pending: deque[_Job] = deque()
        self._flusher: asyncio.Task[None] | None = None

    # -- the connection ---------------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("the store is not open")
        return self._conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def in_transaction(self) -> bool:
        return self._conn is not None and self._conn.in_transaction

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="gatecord-sqlite")
        try:
            await self.call(_create_private_file, self.path)
            await self.call(self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            for pragma in PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
            # vector distances for the knowledge base; without it that searches with numpy (and says why)
            self.vector_problem = load_sqlite_vec(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"database {self.path} cannot be opened ({exc})") from None
        self._conn = conn

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._executor is None:
            return
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await self.call(conn.close)
            executor, self._executor = self._executor, None
        executor.shutdown(wait=True)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the database thread."""
        if self._executor is None:
            raise StorageError("the store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    # -- transactions -----------------------------------------------------------------------------

    def current(self) -> SqliteTx | None:
        return _current.get()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; nested blocks of the same task join the outer one."""
        outer = _current.get()
        if outer is not None:
            yield outer
            return
        async with self._lock:
            tx = SqliteTx(self)
            token = _current.set(tx)
            try:
                async with self._durable():
                    yield tx
            finally:
                _current.reset(token)

    @asynccontextmanager
    async def _durable(self) -> AsyncIterator[None]:
        """One transaction that is committed, or rolled back, before it ends; the caller holds the lock."""
        try:
            await _to_the_end(self.call(self._exec, "BEGIN IMMEDIATE"))
            yield
            await _to_the_end(self.call(self._exec, "COMMIT"))
        except BaseException:
            await _to_the_end(self.call(self._recover))
            raise

    def _exec(self, sql: str) -> None:
        try:
            self.connection.execute(sql)
        except sqlite3.Error as exc:
            raise _storage_error(exc) from exc

    def _recover(self) -> None:
        """Leave no transaction open on the connection: roll back, or reconnect when that fails."""
        conn = self._conn
        if conn is None or not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
            if not conn.in_transaction:
                return
        except sqlite3.Error as exc:
            log.warning("storage: ROLLBACK failed (%s); reconnecting to the database", exc)
        try:
            conn.close()
        except sqlite3.Error:
            log.warning("storage: closing the failed connection raised; opening a new one anyway")
        self._conn = None
        self._connect()

    async def run(self, body: Callable[[SqliteSyncTx], T]) -> T:
        """Run ``body`` in one transaction (its own SAVEPOINT inside a shared group commit)."""
        outer = _current.get()
        if outer is not None:
            return await self.call(body, outer.sync)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((body, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            async with self._lock:
                jobs: list[_Job] = []
                while self._pending and len(jobs) < MAX_BATCH:
                    job = self._pending.popleft()
                    if not job[1].done():  # its caller was cancelled before it started
                        jobs.append(job)
                if not jobs:
                    continue
                try:
                    outcomes = await _to_the_end(self.call(self._batch, [body for body, _ in jobs]))
                except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch was kept
                    outcomes = [(False, exc)] * len(jobs)
                except BaseException:  # cancelled (the store closing) or interrupted: tell the callers, then stop
                    for _, future in jobs:
                        if not future.done():
                            future.set_exception(StorageError("the transaction was interrupted"))
                    raise
            for (_, future), (ok, value) in zip(jobs, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _batch(self, bodies: list[Callable[[SqliteSyncTx], Any]]) -> list[tuple[bool, Any]]:
        """In the database thread: every body in one transaction; a failing body is undone alone."""
        tx = SqliteSyncTx(self)
        self._exec("BEGIN IMMEDIATE")
        outcomes: list[tuple[bool, Any]] = []
        try:
            if len(bodies) == 1:
                try:
                    outcomes.append((True, bodies[0](tx)))
                except Exception as exc:
                    self._recover()
                    return [(False, exc)]
            else:
                for body in bodies:
                    self._exec("SAVEPOINT gatecord_body")
                    try:
                        outcomes.append((True, body(tx)))
                        self._exec("RELEASE gatecord_body")
                    except Exception as exc:
                        self._exec("ROLLBACK TO gatecord_body")
                        self._exec("RELEASE gatecord_body")
                        outcomes.append((False, exc))
            self._exec("COMMIT")
        except BaseException:
            self._recover()
            raise
        return outcomes

    # -- readiness --------------------------------------------------------------------------------

    async def probe(self, statement: str, timeout: float) -> str | None:
        """Commit ``statement`` (a write that changes nothing), waiting at most ``timeout`` for locks;
        ``None`` when it worked, else the reason."""
        try:
            async with asyncio.timeout(timeout):
                await self._lock.acquire()
        except TimeoutError:
            return f"the store was busy for {timeout:g} s"
        try:
            await self.call(self._exec, f"PRAGMA busy_timeout={max(1, int(timeout * 1000))}")
            try:
                async with self._durable():
                    await self.call(self._exec, statement)
            finally:
                if self._conn is not None:
                    await self.call(self._exec, f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except StorageError as exc:
            return str(exc) or type(exc).__name__
        finally:
            self._lock.release()
        return None

    # -- locks ------------------------------------------------------------------------------------

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[bool]:
        """One process owns a SQLite file: its periodic jobs need no lock between processes."""
        yield True


async def _to_the_end(step: Awaitable[T]) -> T:
    """Await ``step`` to its end even if the caller is cancelled meanwhile, then re-raise the cancellation.

    A statement handed to the database thread runs to its end anyway; waiting for it keeps the
    connection's state (in a transaction or not) known to the code that holds the lock.
    """
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()
        raise asyncio.CancelledError
    return task.result()


def _create_private_file(path: Path) -> None:
    if str(path) == ":memory:":
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except OSError as exc:  # a folder that cannot be made, a directory in the way, no permission
        raise StorageError(f"database {path} cannot be created ({exc.strerror or exc})") from None
