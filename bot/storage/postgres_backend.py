"""PostgreSQL: SQLAlchemy's async engine over asyncpg, a pool shared by the process.

Many processes write the same tables: the code keeps counters exact with row locks (``SELECT … FOR
UPDATE``) or single conditional statements, claims work with ``FOR UPDATE SKIP LOCKED``, and runs
periodic sweeps under a session advisory lock (``lock()``), so one process at a time does each.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection, CursorResult, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.storage.errors import IntegrityError, StorageError
from bot.storage.records import Record, Row, index_of
from bot.storage.sqltext import Params, log_statement, positional
from bot.storage.tx import AsyncFetchvalFromFetchone, Dialect, FetchvalFromFetchone

log = logging.getLogger(__name__)

T = TypeVar("T")

_current: contextvars.ContextVar[PostgresTx | None] = contextvars.ContextVar("gatecord_pg_tx", default=None)


def async_url(url: str) -> str:
    """``postgresql://…`` (what operators write) → SQLAlchemy's asyncpg URL."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL for messages and logs: never the password."""
    try:
        return make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "postgresql://…"


def storage_error(exc: BaseException) -> StorageError:
    """A driver's failure as the storage layer's own (the reason in one line)."""
    if isinstance(exc, sa_exc.IntegrityError):
        return IntegrityError(_reason(exc))
    if isinstance(exc, sa_exc.DBAPIError):
        return StorageError(_reason(exc))
    return StorageError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _reason(exc: sa_exc.DBAPIError) -> str:
    orig = exc.orig if exc.orig is not None else exc
    text_ = str(orig).strip()
    # asyncpg's messages arrive wrapped: "<class 'asyncpg.exceptions.X'>: reason"
    if text_.startswith("<class"):
        text_ = text_.split(">:", 1)[-1].strip()
    return text_.splitlines()[0] if text_ else type(orig).__name__


_FAILURES = (sa_exc.SQLAlchemyError, OSError, ConnectionError)


def _rows(result: CursorResult[Any]) -> list[Row]:
    if not result.returns_rows:
        return []
    index = index_of(list(result.keys()))
    return [Record(index, tuple(row)) for row in result.fetchall()]


class PostgresSyncTx(FetchvalFromFetchone):
    """Statements on a connection, called from a body run by ``AsyncConnection.run_sync``."""

    dialect: Dialect = "postgresql"

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _result(self, sql: str, params: Params) -> CursorResult[Any]:
        log_statement(sql)
        statement, values = positional(sql, params)
        try:
            return self._conn.exec_driver_sql(statement, values)
        except _FAILURES as exc:
            raise storage_error(exc) from exc

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._result(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        many = [positional(sql, row) for row in rows]
        if not many:
            return
        try:
            self._conn.exec_driver_sql(many[0][0], [values for _, values in many])
        except _FAILURES as exc:
            raise storage_error(exc) from exc

    def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = _rows(self._result(sql, params))
        return rows[0] if rows else None

    def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return _rows(self._result(sql, params))


class PostgresTx(AsyncFetchvalFromFetchone):
    """The async face of a transaction on one pooled connection."""

    dialect: Dialect = "postgresql"

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _result(self, sql: str, params: Params) -> CursorResult[Any]:
        log_statement(sql)
        statement, values = positional(sql, params)
        try:
            return await self.conn.exec_driver_sql(statement, values)
        except _FAILURES as exc:
            raise storage_error(exc) from exc

    async def execute(self, sql: str, params: Params = ()) -> int:
        return (await self._result(sql, params)).rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        many = [positional(sql, row) for row in rows]
        if not many:
            return
        try:
            await self.conn.exec_driver_sql(many[0][0], [values for _, values in many])
        except _FAILURES as exc:
            raise storage_error(exc) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = _rows(await self._result(sql, params))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return _rows(await self._result(sql, params))


class PostgresBackend:
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.connect_timeout = connect_timeout
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StorageError("the store is not open")
        return self._engine

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    def in_transaction(self) -> bool:
        return _current.get() is not None

    async def open(self) -> None:
        if self._engine is not None:
            return
        engine = create_async_engine(
            # No pre-ping: it costs three round trips per transaction (measured: a third of a budget reservation's);
            # a connection the server dropped fails its statement once (StorageError) and the pool replaces it.
            async_url(self.url), pool_size=self.pool_size, max_overflow=self.max_overflow, pool_recycle=1800,
            connect_args={"timeout": self.connect_timeout},
            hide_parameters=True,  # a failed statement's message never carries its parameters (prompts, tokens)
        )
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except _FAILURES as exc:
            await engine.dispose()
            raise StorageError(f"database {safe_url(self.url)} cannot be reached ({storage_error(exc)})") from None
        self._engine = engine

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    def current(self) -> PostgresTx | None:
        return _current.get()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        outer = _current.get()
        if outer is not None:
            yield outer
            return
        try:
            async with self.engine.begin() as conn:
                tx = PostgresTx(conn)
                token = _current.set(tx)
                try:
                    yield tx
                finally:
                    _current.reset(token)
        except _FAILURES as exc:  # BEGIN or COMMIT failed (the body's own errors are already ours)
            raise storage_error(exc) from exc

    async def run(self, body: Callable[[PostgresSyncTx], T]) -> T:
        outer = _current.get()
        if outer is not None:
            return await outer.conn.run_sync(lambda conn: body(PostgresSyncTx(conn)))
        try:
            async with self.engine.begin() as conn:
                return await conn.run_sync(lambda sync: body(PostgresSyncTx(sync)))
        except _FAILURES as exc:
            raise storage_error(exc) from exc

    async def probe(self, statement: str, timeout: float) -> str | None:
        """Commit ``statement`` (a write that changes nothing), waiting at most ``timeout`` for locks;
        ``None`` when it worked, else the reason."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(text(f"SET LOCAL lock_timeout = {max(1, int(timeout * 1000))}"))
                await conn.execute(text(statement))
        except (*_FAILURES, StorageError) as exc:
            return str(storage_error(exc))
        return None

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[bool]:
        """A session advisory lock named ``name``: True when this process got it (held until the block ends)."""
        key = lock_key(name)
        async with self.engine.connect() as conn:
            got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
            await conn.commit()
            try:
                yield got
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    await conn.commit()


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (the same in every process and release)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
