"""The storage layer on both backends: migrations (Alembic), transactions, group commit, errors, locks.

Tests taking ``store`` or ``backend`` run twice: on an SQLite file and on a real PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.storage import migrations
from bot.storage.errors import DatabaseTooNew, IntegrityError, MigrationError, NoMigrations, StorageError
from bot.storage.schema import metadata
from bot.storage.sqltext import positional
from bot.storage.store import Store

REPO = Path(__file__).resolve().parent.parent
VERSIONS = REPO / "bot" / "storage" / "alembic" / "versions"
LATEST = max(int(p.name[:4]) for p in VERSIONS.glob("[0-9]*.py"))


def new_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    """An unopened store on an empty database of ``backend``."""
    if backend == "sqlite":
        return Store(tmp_path / "g.db")
    return Store(url=request.getfixturevalue("pg_url"))


async def table_names(store: Store) -> set[str]:
    if store.dialect == "sqlite":
        rows = await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    else:
        rows = await store.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


# -- migrations ---------------------------------------------------------------------------------------


async def test_migrations_apply_and_are_idempotent(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store = new_store(backend, tmp_path, request)
    assert await store.open() == LATEST
    tables = await table_names(store)
    assert tables == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    await store.close()
    again = Store(store.path) if store.path is not None else Store(url=store.url)
    assert await again.open() == LATEST
    assert await table_names(again) == tables
    assert await again.fetchval("SELECT version_num FROM alembic_version") == f"{LATEST:04d}"
    await again.close()


async def test_the_migrated_schema_is_the_metadata(store: Store) -> None:
    """Alembic's revisions and bot/storage/schema.py describe the same tables, columns and indexes."""
    def compare(connection: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    if store.dialect == "sqlite":
        engine = migrations.sqlite_engine(store.path or "")
        try:
            with engine.connect() as connection:
                diffs = compare(connection)
        finally:
            engine.dispose()
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        from bot.storage.postgres_backend import async_url

        engine_ = create_async_engine(async_url(store.url or ""))
        try:
            async with engine_.connect() as conn:
                diffs = await conn.run_sync(compare)
        finally:
            await engine_.dispose()
    assert diffs == []


async def test_sqlite_file_settings(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    await store.open()
    assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"
    assert (await store.fetchone("PRAGMA foreign_keys"))[0] == 1
    assert (await store.fetchone("PRAGMA busy_timeout"))[0] == 5000
    assert (await store.fetchone("PRAGMA synchronous"))[0] == 2  # FULL: a commit survives power loss in WAL
    await store.close()
    assert (tmp_path / "g.db").stat().st_mode & 0o777 == 0o600


def revisions_with(tmp_path: Path, extra: dict[str, str]) -> Path:
    """A copy of the packaged Alembic folder plus ``extra`` revision files."""
    folder = tmp_path / "alembic"
    shutil.copytree(REPO / "bot" / "storage" / "alembic", folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name, body in extra.items():
        (folder / "versions" / name).write_text(body)
    return folder


BROKEN_REVISION = f'''
import sqlalchemy as sa
from alembic import op

revision = "{LATEST + 1:04d}"
down_revision = "{LATEST:04d}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("x", sa.Integer()))
    op.execute("INSERT INTO nowhere VALUES (1)")


def downgrade() -> None:
    pass
'''


async def test_a_revision_that_fails_half_way_leaves_the_previous_version(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(backend, tmp_path, request)
    await store.open()
    await store.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (?, ?, ?)", (1, "kept", 5))
    await store.close()
    broken = revisions_with(tmp_path, {"9999_broken.py": BROKEN_REVISION})
    monkeypatch.setattr(migrations, "_script_location", lambda: broken)
    with pytest.raises(MigrationError, match=f"the database stays at version {LATEST}") as info:
        await store.open()
    assert "nowhere" in str(info.value)
    monkeypatch.undo()
    assert await store.open() == LATEST
    assert "half_done" not in await table_names(store)  # the failed revision left nothing behind
    assert await store.fetchval("SELECT name FROM guilds WHERE guild_id = 1") == "kept"
    await store.close()


async def test_a_database_newer_than_the_code_is_refused_untouched(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = new_store(backend, tmp_path, request)
    await store.open()
    await store.execute("UPDATE alembic_version SET version_num = ?", (f"{LATEST + 5:04d}",))
    await store.close()
    with pytest.raises(DatabaseTooNew) as info:
        await store.open()
    assert f"schema version {LATEST + 5}, newer than this gatecord knows (latest {LATEST})" in str(info.value)
    assert not store.is_open
    if backend == "sqlite":
        assert migrations.stored_version(tmp_path / "g.db") == LATEST + 5
        with pytest.raises(DatabaseTooNew):
            migrations.ensure_usable(tmp_path / "g.db")


async def test_no_migrations_at_all_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "alembic"
    (empty / "versions").mkdir(parents=True)
    shutil.copy(REPO / "bot" / "storage" / "alembic" / "env.py", empty / "env.py")
    monkeypatch.setattr(migrations, "_script_location", lambda: empty)
    with pytest.raises(NoMigrations, match="no database migrations"):
        await Store(tmp_path / "g.db").open()
    assert not (tmp_path / "g.db").exists() or migrations.stored_version(tmp_path / "g.db") == 0


def first_wave_file(path: Path, up_to: int) -> None:
    """An SQLite file as the first wave's runner left it: its SQL files up to ``up_to``, versions recorded."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
    for sql_file in sorted((REPO / "bot" / "storage" / "legacy_sql").glob("*.sql")):
        version = int(sql_file.name[:4])
        if version > up_to:
            break
        db.executescript(sql_file.read_text())
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, sql_file.stem[5:]))
    db.close()


@pytest.mark.parametrize("up_to", [5, 14])
async def test_a_first_wave_sqlite_file_is_upgraded_with_its_data(tmp_path: Path, up_to: int) -> None:
    path = tmp_path / "old.db"
    first_wave_file(path, up_to)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (1234567890123456789, 'Old guild', 7)")
    db.execute("INSERT INTO relay_keys(key_id, guild_id, name, key_hash, created_by, created_at)"
               " VALUES ('k1', 1, 'ci', 'h', 2, 3)")
    db.close()
    assert migrations.stored_version(path) == up_to
    store = Store(path)
    assert await store.open() == LATEST
    assert await store.fetchval("SELECT name FROM guilds") == "Old guild"
    row = await store.fetchone("SELECT custom_identity, expires_at FROM relay_keys WHERE key_id = 'k1'")
    assert (row["custom_identity"], row["expires_at"]) == (0, None)  # 0014's columns, on a key from before it
    assert "rate_buckets" in await table_names(store)
    await store.close()
    assert migrations.stored_version(path) == LATEST


# -- statements and rows --------------------------------------------------------------------------------


async def test_rows_by_position_and_name_and_new_ids(store: Store) -> None:
    await store.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (:g, :n, :t)",
                        {"g": 2**62 + 5, "n": "Grüße 🎉", "t": 9})
    row = await store.fetchone("SELECT guild_id, name, left_at FROM guilds WHERE guild_id = ?", (2**62 + 5,))
    assert row is not None
    assert (row[0], row["name"], row["left_at"]) == (2**62 + 5, "Grüße 🎉", None)
    assert dict(row) == {"guild_id": 2**62 + 5, "name": "Grüße 🎉", "left_at": None}
    first = await store.fetchval(
        "INSERT INTO audit_log(ts, guild_id, actor_id, target, field) VALUES (?, ?, ?, ?, ?) RETURNING id",
        (1.5, 1, 2, "guild", "model"),
    )
    second = await store.fetchval(
        "INSERT INTO audit_log(ts, guild_id, actor_id, target, field) VALUES (?, ?, ?, ?, ?) RETURNING id",
        (1.5, 1, 2, "guild", "model"),
    )
    assert second > first
    assert await store.execute("UPDATE audit_log SET field = 'x' WHERE guild_id = 1") == 2
    assert await store.fetchval("SELECT name FROM guilds WHERE guild_id = 0", default="none") == "none"


async def test_a_constraint_refusal_is_an_integrity_error_and_changes_nothing(store: Store) -> None:
    await store.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (1, 'a', 1)")
    with pytest.raises(IntegrityError):
        async with store.transaction() as tx:
            await tx.execute("UPDATE guilds SET name = 'changed' WHERE guild_id = 1")
            await tx.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (1, 'b', 2)")
    assert await store.fetchval("SELECT name FROM guilds WHERE guild_id = 1") == "a"
    with pytest.raises(StorageError):
        await store.fetchval("SELECT * FROM no_such_table")


def test_parameters_are_numbered_for_postgresql_outside_literals_comments_and_casts() -> None:
    sql, values = positional("SELECT '?', \"a?\" FROM t WHERE a = ? -- why?\n AND b = ?", (1, 2))
    assert (sql, values) == ("SELECT '?', \"a?\" FROM t WHERE a = $1 -- why?\n AND b = $2", (1, 2))
    sql, values = positional("SELECT x::text, ':no' FROM t WHERE c = :c AND d = :d OR e = :c", {"d": 2, "c": 1})
    assert (sql, values) == ("SELECT x::text, ':no' FROM t WHERE c = $1 AND d = $2 OR e = $1", (1, 2))
    with pytest.raises(ValueError, match="2 '\\?' marks but 1 parameters"):
        positional("SELECT ? + ?", (1,))
    with pytest.raises(ValueError, match="no value for the parameter :d"):
        positional("SELECT :c + :d", {"c": 1})


# -- transactions ---------------------------------------------------------------------------------------


async def test_transactions_do_not_interleave(store: Store) -> None:
    await store.execute("INSERT INTO rate_buckets(name, tokens, updated_at) VALUES ('n', 0, 0)")

    async def bump() -> None:
        async with store.transaction() as tx:
            n = await tx.fetchval("SELECT tokens FROM rate_buckets WHERE name = 'n'" + _lock(store))
            await asyncio.sleep(0)  # another coroutine runs here; it must not see or join this transaction
            await tx.execute("UPDATE rate_buckets SET tokens = ? WHERE name = 'n'", (n + 1,))

    async def failing() -> None:
        async with store.transaction() as tx:
            await tx.execute("UPDATE rate_buckets SET tokens = tokens + 1000 WHERE name = 'n'")
            raise RuntimeError("boom")

    results = await asyncio.gather(*[bump() for _ in range(50)], failing(), return_exceptions=True)
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert [r for r in results if isinstance(r, BaseException) and not isinstance(r, RuntimeError)] == []
    assert await store.fetchval("SELECT tokens FROM rate_buckets WHERE name = 'n'") == 50


def _lock(store: Store) -> str:
    return " FOR UPDATE" if store.dialect == "postgresql" else ""


async def test_concurrent_bodies_commit_together_and_a_failing_one_alone_is_undone(store: Store) -> None:
    def insert(n: int) -> Any:
        def body(tx: Any) -> int:
            tx.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (?, ?, ?)", (n, f"g{n}", n))
            if n == 13:
                tx.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (?, ?, ?)", (1, "dup", 0))
            return n

        return body

    results = await asyncio.gather(*(store.run(insert(n)) for n in range(1, 101)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], IntegrityError)
    ids = [r[0] for r in await store.fetchall("SELECT guild_id FROM guilds ORDER BY guild_id")]
    assert ids == [n for n in range(1, 101) if n != 13]  # 13's first insert was undone with it


async def test_a_body_inside_a_transaction_joins_it(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (1, 'a', 1)")
            await store.run(lambda t: t.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (2, 'b', 1)"))
            assert await store.fetchval("SELECT COUNT(*) FROM guilds") == 2
            raise RuntimeError("undo both")
    assert await store.fetchval("SELECT COUNT(*) FROM guilds") == 0


# -- SQLite: failures at commit, a broken connection, cancellation ------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "g.db")
    await store.open()
    await store.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    await store.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY,"
        " parent_id INTEGER NOT NULL REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    yield store
    await store.close()


async def insert_parent(store: Store, parent_id: int) -> None:
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO parent(id) VALUES (?)", (parent_id,))


async def test_a_failed_commit_is_rolled_back_and_the_next_transaction_works(sqlite_store: Store) -> None:
    store = sqlite_store
    # A deferred foreign key is checked at COMMIT: the COMMIT itself fails, as it would on a full
    # disk or an I/O error, and SQLite leaves the transaction open.
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO parent(id) VALUES (1)")
            await tx.execute("INSERT INTO child(id, parent_id) VALUES (1, 99)")
    assert not store.in_transaction()
    await insert_parent(store, 2)  # the next transaction starts and commits
    assert [r[0] for r in await store.fetchall("SELECT id FROM parent")] == [2]
    # the same through a group commit: the batch's COMMIT fails, every body of it is told
    results = await asyncio.gather(
        store.run(lambda tx: tx.execute("INSERT INTO child(id, parent_id) VALUES (2, 98)")),
        store.run(lambda tx: tx.execute("INSERT INTO parent(id) VALUES (3)")),
        return_exceptions=True,
    )
    assert all(isinstance(r, IntegrityError) for r in results)
    assert not store.in_transaction()
    assert [r[0] for r in await store.fetchall("SELECT id FROM parent")] == [2]


class _RollbackFails:
    """A connection whose ROLLBACK fails (a disk error), everything else passed through."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_a_connection_whose_rollback_fails_is_replaced(sqlite_store: Store) -> None:
    store = sqlite_store
    backend: Any = store._backend
    broken = _RollbackFails(backend.connection)
    backend._conn = broken
    with pytest.raises(IntegrityError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO child(id, parent_id) VALUES (1, 99)")
    assert backend.connection is not broken
    await insert_parent(store, 3)
    assert await store.fetchval("SELECT id FROM parent") == 3
    assert (await store.fetchone("PRAGMA synchronous"))[0] == 2  # the new connection has the same pragmas
    assert (await store.fetchone("PRAGMA foreign_keys"))[0] == 1
    broken.real.close()


async def started(store: Store, statement: str) -> asyncio.Event:
    """An event set when ``statement`` starts running in the database thread."""
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    backend: Any = store._backend

    def trace(sql: str) -> None:
        if sql == statement:
            loop.call_soon_threadsafe(event.set)

    await backend.call(backend.connection.set_trace_callback, trace)
    return event


async def test_cancelled_while_begin_waits_leaves_no_transaction_behind(sqlite_store: Store) -> None:
    store = sqlite_store
    assert store.path is not None
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock: our BEGIN waits on it
    begun = await started(store, "BEGIN IMMEDIATE")
    task = asyncio.create_task(insert_parent(store, 1))
    await begun.wait()
    task.cancel()
    other.execute("COMMIT")  # our BEGIN, cancelled or not, now goes through in the database thread
    other.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not store.in_transaction()
    await insert_parent(store, 2)  # the next transaction works
    assert [r[0] for r in await store.fetchall("SELECT id FROM parent")] == [2]


async def test_cancelled_while_commit_runs_still_ends_the_transaction(sqlite_store: Store) -> None:
    store = sqlite_store
    committing = await started(store, "COMMIT")
    task = asyncio.create_task(insert_parent(store, 1))
    await committing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not store.in_transaction()
    await insert_parent(store, 2)
    # the COMMIT had started: it finished (the caller, cancelled, can't tell, as with any lost answer)
    assert [r[0] for r in await store.fetchall("SELECT id FROM parent ORDER BY id")] == [1, 2]


async def test_the_write_probe_reports_an_sqlite_file_that_cannot_write(sqlite_store: Store) -> None:
    store = sqlite_store
    assert store.path is not None
    assert await store.write_probe(timeout=0.2) is None
    backend: Any = store._backend
    await backend.call(backend.connection.execute, "PRAGMA query_only=ON")  # as a read-only file or mount would
    assert await store.write_probe(timeout=0.2) == "attempt to write a readonly database"
    await backend.call(backend.connection.execute, "PRAGMA query_only=OFF")
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the timeout
    assert await store.write_probe(timeout=0.2) == "database is locked"
    other.execute("ROLLBACK")
    other.close()
    assert await store.write_probe(timeout=0.2) is None
    assert (await store.fetchone("PRAGMA busy_timeout"))[0] == 5000  # the probe's short wait was its own
    await insert_parent(store, 1)


# -- PostgreSQL: many processes ------------------------------------------------------------------------


@pytest.fixture
async def two_pg_stores(pg_migrated_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one PostgreSQL database, as two processes would have."""
    first, second = Store(url=pg_migrated_url), Store(url=pg_migrated_url)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_the_write_probe_reports_a_postgresql_table_locked_by_another_process(
    two_pg_stores: tuple[Store, Store],
) -> None:
    mine, other = two_pg_stores
    assert await mine.write_probe(timeout=0.5) is None
    async with other.transaction() as tx:
        await tx.execute("LOCK TABLE alembic_version IN EXCLUSIVE MODE")
        assert "lock timeout" in (await mine.write_probe(timeout=0.5) or "")
    assert await mine.write_probe(timeout=0.5) is None


async def test_an_advisory_lock_is_held_by_one_process_at_a_time(two_pg_stores: tuple[Store, Store]) -> None:
    first, second = two_pg_stores
    async with first.lock("sweep") as held:
        assert held
        async with second.lock("sweep") as other_held:
            assert not other_held
        async with second.lock("another sweep") as unrelated:
            assert unrelated
    async with second.lock("sweep") as held_now:
        assert held_now


async def test_an_sqlite_store_always_holds_its_locks(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    await store.open()
    async with store.lock("sweep") as held:
        assert held
    await store.close()


async def test_an_unreachable_postgresql_is_one_line_without_the_password() -> None:
    from tests.pg_server import free_port

    store = Store(url=f"postgresql://gatecord:hunter2secret@127.0.0.1:{free_port()}/gatecord")
    with pytest.raises(StorageError) as info:
        await store.open()
    message = str(info.value)
    assert message.startswith("database postgresql://gatecord:***@127.0.0.1:") and "cannot be reached" in message
    assert "hunter2secret" not in message and "\n" not in message
