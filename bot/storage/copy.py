"""``gatecord copy-db``: move an installation from SQLite to PostgreSQL (or back) with every row.

The source must be at this code's schema version (``gatecord migrate`` brings it there first); it is
read in one snapshot (SQLite: one read transaction on a read-only connection; PostgreSQL: REPEATABLE
READ, read only). The target is migrated to the newest version and must hold no rows. Every table of
``schema.metadata`` is then copied, parents before children (``metadata.sorted_tables``), in batches
(a batch in memory at a time), all in ONE transaction on the target: a copy that fails leaves the
target empty. Auto-numbered keys continue above the source's high-water mark (its largest id, or
the id its sequence had already handed out), so new rows never reuse an id a deleted row had (a
Discord button may still name it).

Both sides are driven with SQLAlchemy Core on a sync ``Connection``: SQLite's in a thread of its own,
PostgreSQL's through ``AsyncConnection.run_sync``, so the copy is written once for both.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from sqlalchemy import Column, Table, bindparam, create_engine, event, func, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot.storage import migrations
from bot.storage.errors import DatabaseTooNew, MigrationError, StorageError
from bot.storage.paths import images_dir_for
from bot.storage.postgres_backend import async_url, safe_url, storage_error
from bot.storage.schema import metadata
from bot.storage.store import Store

T = TypeVar("T")

BATCH_ROWS = 1000
EXIT_FAILURE = 1  # the copy ran and failed (the target holds rows, a row was refused): nothing was written
EXIT_CONFIG = 2  # cannot start: a bad argument, a database that cannot be reached or is at another version


class CopyError(Exception):
    """The copy did not happen; ``str()`` is one line for the operator (never a password)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Endpoint:
    """One side of a copy: an SQLite file or a PostgreSQL database."""

    kind: Literal["sqlite", "postgresql"]
    location: str  # the file's path, or the URL (with its password: never shown)

    def describe(self) -> str:
        return f"database {self.location if self.kind == 'sqlite' else safe_url(self.location)}"

    def store(self) -> Store:
        return Store(self.location) if self.kind == "sqlite" else Store(url=self.location)


def parse_endpoint(value: str, option: str) -> Endpoint:
    """``sqlite:PATH`` (also ``sqlite:///PATH``) or ``postgresql://…`` (``postgres://`` too)."""
    value = value.strip()
    scheme, sep, rest = value.partition(":")
    if sep and scheme.lower() == "sqlite":
        path = rest[2:] if rest.startswith("///") else rest
        if path:
            return Endpoint("sqlite", path)
    elif sep and scheme.lower() in ("postgresql", "postgres") and rest.startswith("//") and len(rest) > 2:
        return Endpoint("postgresql", "postgresql:" + rest)
    # the value is not echoed: a mistyped URL may still carry a password
    raise CopyError(f"{option}: give sqlite:PATH or postgresql://user:password@host:5432/dbname", EXIT_CONFIG)


@dataclass(frozen=True)
class TableCopy:
    name: str
    rows: int


async def copy_database(
    source: Endpoint, target: Endpoint, *, batch_rows: int = BATCH_ROWS, report: Callable[[str], None] = print,
) -> list[TableCopy]:
    """Copy every row of ``source`` into ``target`` (see the module's docstring); ``report`` gets one line
    per table and a last line. Raises ``CopyError``."""
    if source == target:
        raise CopyError("--from and --to are the same database", EXIT_CONFIG)
    try:
        latest = migrations.latest_version()
    except MigrationError as exc:
        raise CopyError(str(exc), EXIT_CONFIG) from None
    reader = await _Side.open(source, write=False)
    try:
        await _check_source(reader, source, latest)
        await _migrate_target(target)
        writer = await _Side.open(target, write=True)
        try:
            copied = await _copy_all(reader, writer, target, batch_rows)
            await writer.commit()
        finally:
            await writer.close()
    finally:
        await reader.close()
    for table in copied:
        report(f"  {table.name}: {table.rows} row{'' if table.rows == 1 else 's'}")
    total = sum(t.rows for t in copied)
    report(f"copied {total} rows in {len(copied)} tables from {source.describe()} to {target.describe()} "
           f"(schema version {latest})")
    return copied


async def _check_source(reader: _Side, source: Endpoint, latest: int) -> None:
    try:
        version = await reader.run(migrations.current_version)
    except MigrationError as exc:
        raise CopyError(f"{source.describe()}: {exc}", EXIT_CONFIG) from None
    except (sa_exc.SQLAlchemyError, sqlite3.Error, OSError) as exc:
        raise CopyError(f"{source.describe()} cannot be read ({storage_error(exc)})", EXIT_CONFIG) from None
    if version > latest:
        raise CopyError(f"{source.describe()} is at schema version {version}, newer than this gatecord knows "
                        f"(latest {latest}): copy it with the gatecord release that created it", EXIT_CONFIG)
    if version == 0:
        raise CopyError(f"{source.describe()} holds no gatecord schema: nothing to copy", EXIT_CONFIG)
    if version < latest:
        raise CopyError(
            f"{source.describe()} is at schema version {version}, this gatecord's is {latest}: "
            "run `gatecord migrate` on it first (with [storage] pointing at it), then copy", EXIT_CONFIG,
        )


async def _migrate_target(target: Endpoint) -> None:
    store = target.store()
    try:
        await store.open()
    except MigrationError as exc:
        code = EXIT_CONFIG if isinstance(exc, DatabaseTooNew) else EXIT_FAILURE
        raise CopyError(f"--to: {exc}", code) from None
    except StorageError as exc:
        raise CopyError(str(exc), EXIT_CONFIG) from None
    finally:
        await store.close()


async def _copy_all(reader: _Side, writer: _Side, target: Endpoint, batch_rows: int) -> list[TableCopy]:
    tables = metadata.sorted_tables
    for table in tables:
        if await writer.run(partial(_has_rows, table)):
            raise CopyError(f"{target.describe()} is not empty (table {table.name} has rows): copy-db fills a "
                            "new database; give an empty one")
    copied: list[TableCopy] = []
    for table in tables:
        try:
            rows = await _copy_table(reader, writer, table, batch_rows)
            column = table.autoincrement_column
            if column is not None:
                mark = await reader.run(partial(_high_water, table, column))
                await writer.run(partial(_set_high_water, table, column, mark))
        except (sa_exc.SQLAlchemyError, sqlite3.Error, OSError) as exc:
            raise CopyError(f"copying table {table.name} failed ({storage_error(exc)}); "
                            f"{target.describe()} was left without any copied row") from None
        copied.append(TableCopy(table.name, rows))
    return copied


async def _copy_table(reader: _Side, writer: _Side, table: Table, batch_rows: int) -> int:
    """Rows in key order, a batch at a time. A row naming a parent row of its own table that comes
    later in that order is inserted without it, and the link is set once the table is in.

    From SQLite to PostgreSQL, the media files an SQLite installation kept as files (next to its database,
    ``images/``) go into ``media_files.data``: the PostgreSQL processes may not share that folder, and
    their /imagine buttons read the bytes from the database first."""
    inline_images = None
    if reader.endpoint.kind == "sqlite" and writer.endpoint.kind == "postgresql":
        inline_images = images_dir_for(reader.endpoint.location)
    key = _single_key(table)
    self_refs = [fk.parent for fk in table.foreign_keys if fk.column.table is table]
    result: CursorResult[Any] = await reader.run(partial(_stream, table, batch_rows))
    deferred: list[dict[str, Any]] = []
    count = 0
    while True:
        batch = await reader.run(lambda _conn: [dict(row._mapping) for row in result.fetchmany(batch_rows)])
        if not batch:
            break
        if key is not None:
            for row in batch:
                for column in self_refs:
                    parent = row[column.name]
                    if parent is not None and parent >= row[key.name]:
                        deferred.append({"link_key": row[key.name], "link_column": column.name,
                                         "link_value": parent})
                        row[column.name] = None
        if table.name == "media_files" and inline_images is not None:
            await reader.run(partial(_inline_image_files, inline_images, batch))
        if table.name == "knowledge_chunks" and reader.endpoint.kind != writer.endpoint.kind:
            _convert_embeddings(batch, writer.endpoint.kind)
        await writer.run(partial(_insert, table, batch))
        count += len(batch)
    for link in deferred:
        await writer.run(partial(_link, table, key, link))
    return count


def _inline_image_files(images: Path, rows: list[dict[str, Any]], _conn: Connection) -> None:
    """Fill ``data`` from the file each row names, where the row has no bytes and the file is there."""
    root = images.resolve()
    for row in rows:
        if row.get("data") is not None or not row.get("path"):
            continue
        file = (root / row["path"]).resolve()
        if file.is_relative_to(root) and file.is_file():
            row["data"] = file.read_bytes()


def _convert_embeddings(rows: list[dict[str, Any]], target: str) -> None:
    """A chunk's float32 vector as the target keeps it: little-endian bytes in SQLite, ``real[]`` in PostgreSQL
    (schema.py's ``Embedding``); float32 → float → real is exact."""
    for row in rows:
        value = row.get("embedding")
        if value is None:
            continue
        if target == "postgresql" and isinstance(value, bytes | bytearray | memoryview):
            row["embedding"] = np.frombuffer(bytes(value), dtype="<f4").tolist()
        elif target == "sqlite" and not isinstance(value, bytes | bytearray | memoryview):
            row["embedding"] = np.asarray(value, dtype="<f4").tobytes()


def _single_key(table: Table) -> Column[Any] | None:
    keys = list(table.primary_key.columns)
    return keys[0] if len(keys) == 1 else None


# -- on a sync connection (in SQLite's thread, or PostgreSQL's run_sync) -------------------------------


def _stream(table: Table, batch_rows: int, conn: Connection) -> CursorResult[Any]:
    query = select(table).order_by(*table.primary_key.columns)
    return conn.execution_options(stream_results=True, max_row_buffer=batch_rows).execute(query)


def _has_rows(table: Table, conn: Connection) -> bool:
    return conn.execute(select(text("1")).select_from(table).limit(1)).first() is not None


def _insert(table: Table, rows: list[dict[str, Any]], conn: Connection) -> None:
    conn.execute(table.insert(), rows)


def _link(table: Table, key: Column[Any] | None, link: dict[str, Any], conn: Connection) -> None:
    assert key is not None
    column = table.c[link["link_column"]]
    statement = table.update().where(key == bindparam("link_key")).values({column: bindparam("link_value")})
    conn.execute(statement, {"link_key": link["link_key"], "link_value": link["link_value"]})


def _high_water(table: Table, column: Column[Any], conn: Connection) -> int:
    """The largest id in use or ever handed out by the table's counter."""
    largest = int(conn.execute(select(func.coalesce(func.max(column), 0))).scalar_one())
    if conn.dialect.name == "postgresql":
        handed = conn.execute(
            text("SELECT pg_sequence_last_value(CAST(pg_get_serial_sequence(:t, :c) AS regclass))"),
            {"t": table.name, "c": column.name},
        ).scalar()
    elif _sqlite_autoincrement(table):
        handed = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table.name,)).scalar()
    else:
        handed = None  # SQLite reuses the largest rowid + 1 anyway
    return max(largest, int(handed or 0))


def _set_high_water(table: Table, column: Column[Any], mark: int, conn: Connection) -> None:
    """The next auto-numbered id on the target is above ``mark``."""
    if mark <= 0:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, :c), :v, true)"),
                     {"t": table.name, "c": column.name, "v": mark})
    elif _sqlite_autoincrement(table):
        # the inserts already raised it to the largest id copied; deleted ids above that are kept out too
        changed = conn.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = ? AND seq < ?", (mark, table.name, mark)
        ).rowcount
        if not changed and conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_sequence WHERE name = ?", (table.name,)
        ).first() is None:
            conn.exec_driver_sql("INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)", (table.name, mark))


def _sqlite_autoincrement(table: Table) -> bool:
    return bool(table.dialect_options["sqlite"].get("autoincrement"))


# -- the two kinds of connection ------------------------------------------------------------------------


class _Side:
    """One connection in one transaction (a read snapshot, or the target's one write transaction);
    ``run(fn)`` calls ``fn(connection)`` where that connection may be used."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._thread: ThreadPoolExecutor | None = None
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._async_engine: AsyncEngine | None = None
        self._async_conn: AsyncConnection | None = None

    @classmethod
    async def open(cls, endpoint: Endpoint, *, write: bool) -> _Side:
        side = cls(endpoint)
        try:
            if endpoint.kind == "sqlite":
                await side._open_sqlite(write)
            else:
                await side._open_postgres(write)
        except BaseException:
            await side.close()
            raise
        return side

    async def _open_sqlite(self, write: bool) -> None:
        path = Path(self.endpoint.location)
        if not write and not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise CopyError(f"{self.endpoint.describe()} {problem}", EXIT_CONFIG)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gatecord-copy")
        engine = migrations.sqlite_engine(path) if write else _sqlite_reader(path)
        self._engine = engine

        def connect() -> Connection:
            conn = engine.connect()
            conn.begin()  # BEGIN IMMEDIATE (the writer) or BEGIN (the reader's snapshot)
            return conn

        try:
            self._conn = await self._in_thread(connect)
        except (sa_exc.SQLAlchemyError, sqlite3.Error) as exc:
            reason = storage_error(exc)
            raise CopyError(f"{self.endpoint.describe()} cannot be opened ({reason})", EXIT_CONFIG) from None

    async def _open_postgres(self, write: bool) -> None:
        engine = create_async_engine(async_url(self.endpoint.location), poolclass=NullPool,
                                     connect_args={"timeout": 10})
        self._async_engine = engine
        try:
            conn = await engine.connect()
            self._async_conn = conn
            if not write:  # one snapshot of every table
                await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            await conn.begin()
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            reason = storage_error(exc)
            raise CopyError(f"{self.endpoint.describe()} cannot be reached ({reason})", EXIT_CONFIG) from None

    async def run(self, fn: Callable[[Connection], T]) -> T:
        if self._async_conn is not None:
            return await self._async_conn.run_sync(fn)
        if self._conn is None:
            raise StorageError(f"{self.endpoint.describe()} is not open")
        return await self._in_thread(partial(fn, self._conn))

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        """SQLite: every call on the connection in its one thread."""
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def commit(self) -> None:
        try:
            if self._async_conn is not None:
                await self._async_conn.commit()
            elif self._conn is not None:
                await self.run(lambda conn: conn.commit())
        except (sa_exc.SQLAlchemyError, sqlite3.Error, OSError) as exc:
            raise CopyError(f"the copy could not be committed to {self.endpoint.describe()} "
                            f"({storage_error(exc)}); nothing was written") from None

    async def close(self) -> None:
        """Roll back whatever was not committed, and let go of everything."""
        if self._async_conn is not None:
            conn, self._async_conn = self._async_conn, None
            await conn.close()
        if self._async_engine is not None:
            engine, self._async_engine = self._async_engine, None
            await engine.dispose()
        if self._thread is not None:
            sync_conn, sync_engine = self._conn, self._engine
            self._conn = self._engine = None

            def close_sync() -> None:
                if sync_conn is not None:
                    sync_conn.close()
                if sync_engine is not None:
                    sync_engine.dispose()

            await self._in_thread(close_sync)
            thread, self._thread = self._thread, None
            thread.shutdown(wait=True)


def _sqlite_reader(path: Path) -> Engine:
    """A read-only engine on the file whose transactions really begin (one snapshot for every table)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    engine = create_engine(
        "sqlite://", poolclass=NullPool,
        creator=lambda: sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=5),
    )

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine
