"""Migrations: ordered, idempotent, atomic per file; the store's pragmas and transactions."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.storage.migrations import (
    DatabaseTooNew,
    MigrationError,
    NoMigrations,
    discover,
    packaged_migrations,
    split_statements,
    stored_version,
)
from bot.storage.store import Store

REPO = Path(__file__).resolve().parent.parent


def make_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_real_migrations_apply_and_are_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    version = await store.open()
    assert version == max(int(p.name[:4]) for p in (REPO / "bot" / "storage" / "sql").glob("*.sql"))
    tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
    await store.close()
    store = Store(tmp_path / "g.db")
    assert await store.open() == version
    assert await store.fetchval("SELECT COUNT(*) FROM schema_migrations") == len(discover())
    assert {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type='table'")} == tables
    assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"
    assert (await store.fetchone("PRAGMA foreign_keys"))[0] == 1
    assert (await store.fetchone("PRAGMA busy_timeout"))[0] == 5000
    assert (await store.fetchone("PRAGMA synchronous"))[0] == 2  # FULL: a commit survives power loss in WAL
    await store.close()
    assert (tmp_path / "g.db").stat().st_mode & 0o777 == 0o600


async def test_failure_half_way_keeps_previous_version(tmp_path: Path) -> None:
    mig = make_migrations(tmp_path / "m", {
        "0001_a.sql": "CREATE TABLE a (x INTEGER);\nINSERT INTO a VALUES (1);\n",
        "0002_b.sql": "CREATE TABLE b (y INTEGER);\nINSERT INTO b VALUES (1);\nINSERT INTO nowhere VALUES (2);\n",
    })
    store = Store(tmp_path / "g.db", migrations_dir=mig)
    with pytest.raises(MigrationError) as info:
        await store.open()
    assert "0002_b.sql" in str(info.value)
    assert "stays at version 1" in str(info.value)
    check = Store(tmp_path / "g.db", migrations_dir=mig)
    assert await check.open(migrate=False) == 1
    tables = {r[0] for r in await check.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "a" in tables and "b" not in tables  # the failed file left nothing behind
    await check.close()
    # fixed file: the next run applies it and only it
    (mig / "0002_b.sql").write_text("CREATE TABLE b (y INTEGER);\n")
    store = Store(tmp_path / "g.db", migrations_dir=mig)
    assert await store.open() == 2
    assert await store.fetchval("SELECT COUNT(*) FROM a") == 1
    await store.close()


def test_bad_file_names_and_duplicates_are_refused(tmp_path: Path) -> None:
    mig = make_migrations(tmp_path / "m", {"0001_a.sql": "", "0001_b.sql": ""})
    with pytest.raises(MigrationError, match="used twice"):
        discover(mig)
    mig2 = make_migrations(tmp_path / "n", {"1_a.sql": ""})
    with pytest.raises(MigrationError, match="0001_name.sql"):
        discover(mig2)


def test_migrations_are_package_resources() -> None:
    """Found through importlib.resources in the installed package, not a path outside it."""
    names = sorted(m.path.name for m in discover())
    assert names == sorted(p.name for p in (REPO / "bot" / "storage" / "sql").glob("*.sql"))
    assert packaged_migrations().is_dir()


async def test_a_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    mig = make_migrations(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a (x INTEGER);\n"})
    store = Store(tmp_path / "g.db", migrations_dir=mig)
    assert await store.open() == 1
    await store.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (7, 'future', 0)")
    await store.close()
    (mig / "0002_b.sql").write_text("CREATE TABLE b (y INTEGER);\n")  # known here, but the database is past it
    store = Store(tmp_path / "g.db", migrations_dir=mig)
    with pytest.raises(DatabaseTooNew) as info:
        await store.open()
    assert str(info.value) == (
        f"database {tmp_path / 'g.db'} is at schema version 7, newer than this gatecord knows (latest 2): "
        "run the gatecord release that created it, or point storage.path at another database"
    )
    assert not store.is_open
    assert stored_version(tmp_path / "g.db") == 7
    check = Store(tmp_path / "g.db", migrations_dir=mig)
    await check.open(migrate=False)
    assert "b" not in {r[0] for r in await check.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
    await check.close()


async def test_no_migrations_at_all_is_refused(tmp_path: Path) -> None:
    for folder in (make_migrations(tmp_path / "empty", {}), tmp_path / "absent"):
        store = Store(tmp_path / "g.db", migrations_dir=folder)
        with pytest.raises(NoMigrations, match="has no database migrations"):
            await store.open()
        assert not store.is_open
    assert stored_version(tmp_path / "g.db") == 0  # nothing was recorded
    assert stored_version(tmp_path / "never-created.db") == 0
    assert not (tmp_path / "never-created.db").exists()


def test_split_keeps_trigger_bodies_whole() -> None:
    sql = (
        "CREATE TABLE t (x);\n-- comment\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
        "  UPDATE t SET x = 1;\n  UPDATE t SET x = 2;\nEND;\nCREATE INDEX i ON t(x);\n"
    )
    parts = split_statements(sql)
    assert len(parts) == 3
    assert parts[1].startswith("-- comment\nCREATE TRIGGER") and parts[1].endswith("END;")


async def test_transactions_do_not_interleave(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    await store.open()
    await store.execute("CREATE TABLE counter (n INTEGER)")
    await store.execute("INSERT INTO counter VALUES (0)")

    async def bump() -> None:
        async with store.transaction():
            n = await store.fetchval("SELECT n FROM counter")
            await asyncio.sleep(0)  # another coroutine runs here; it must not see or join this transaction
            await store.execute("UPDATE counter SET n = ?", (n + 1,))

    async def failing() -> None:
        async with store.transaction():
            await store.execute("UPDATE counter SET n = n + 1000")
            raise RuntimeError("boom")

    results = await asyncio.gather(*[bump() for _ in range(50)], failing(), return_exceptions=True)
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert await store.fetchval("SELECT n FROM counter") == 50
    await store.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
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
    async with store.transaction():
        await store.execute("INSERT INTO parent(id) VALUES (?)", (parent_id,))


async def test_a_failed_commit_is_rolled_back_and_the_next_transaction_works(store: Store) -> None:
    # A deferred foreign key is checked at COMMIT: the COMMIT itself fails, as it would on a full
    # disk or an I/O error, and SQLite leaves the transaction open.
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        async with store.transaction():
            await store.execute("INSERT INTO parent(id) VALUES (1)")
            await store.execute("INSERT INTO child(id, parent_id) VALUES (1, 99)")
    assert not store.db.in_transaction
    await insert_parent(store, 2)  # the next transaction starts and commits
    assert [r[0] for r in await store.fetchall("SELECT id FROM parent")] == [2]  # nothing of the failed one
    assert await store.fetchval("SELECT COUNT(*) FROM child") == 0


async def test_a_connection_whose_rollback_fails_is_replaced(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real_execute = store.db.execute
    broken = store.db

    def execute(sql: str, *args: object) -> object:
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("disk I/O error")
        return real_execute(sql, *args)

    monkeypatch.setattr(broken, "execute", execute)
    with pytest.raises(sqlite3.IntegrityError):
        async with store.transaction():
            await store.execute("INSERT INTO child(id, parent_id) VALUES (1, 99)")
    assert store.db is not broken
    await insert_parent(store, 3)
    assert await store.fetchval("SELECT id FROM parent") == 3
    assert (await store.fetchone("PRAGMA synchronous"))[0] == 2  # the new connection has the same pragmas
    assert (await store.fetchone("PRAGMA foreign_keys"))[0] == 1


async def started(store: Store, statement: str) -> asyncio.Event:
    """An event set when ``statement`` starts running in aiosqlite's thread."""
    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    def trace(sql: str) -> None:
        if sql == statement:
            loop.call_soon_threadsafe(event.set)

    await store.db.set_trace_callback(trace)
    return event


async def test_cancelled_while_begin_waits_leaves_no_transaction_behind(store: Store) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock: our BEGIN waits on it
    begun = await started(store, "BEGIN IMMEDIATE")
    task = asyncio.create_task(insert_parent(store, 1))
    await begun.wait()
    task.cancel()
    other.execute("COMMIT")  # our BEGIN, cancelled or not, now goes through in aiosqlite's thread
    other.close()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not store.db.in_transaction
    await insert_parent(store, 2)  # the next transaction works
    assert [r[0] for r in await store.fetchall("SELECT id FROM parent")] == [2]


async def test_cancelled_while_commit_runs_still_ends_the_transaction(store: Store) -> None:
    committing = await started(store, "COMMIT")
    task = asyncio.create_task(insert_parent(store, 1))
    await committing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not store.db.in_transaction
    await insert_parent(store, 2)
    # the COMMIT had started: it finished (the caller, cancelled, can't tell, as with any lost answer)
    assert [r[0] for r in await store.fetchall("SELECT id FROM parent ORDER BY id")] == [1, 2]


async def test_the_write_probe_reports_a_database_that_cannot_write(store: Store) -> None:
    assert await store.write_probe(timeout=0.2) is None
    await store.execute("PRAGMA query_only=ON")  # as a read-only file or mount would
    assert await store.write_probe(timeout=0.2) == "attempt to write a readonly database"
    await store.execute("PRAGMA query_only=OFF")
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the timeout
    assert await store.write_probe(timeout=0.2) == "database is locked"
    other.execute("ROLLBACK")
    other.close()
    assert await store.write_probe(timeout=0.2) is None
    assert (await store.fetchone("PRAGMA busy_timeout"))[0] == 5000  # the probe's short wait was its own
    await insert_parent(store, 1)


async def test_the_relay_outbox_commit_behind_a_202_is_fully_synced(tmp_path: Path) -> None:
    """The group commit the relay answers 202 after runs with synchronous=FULL (read back in it)."""
    from bot.relay.keys import KeyStore
    from bot.relay.outbox import NewPost, Outbox
    from bot.relay.validation import validate_payload

    store = Store(tmp_path / "g.db")
    await store.open()
    key = (await KeyStore(store).create(1, created_by=2, channel_ids=[10])).record
    seen: list[int] = []
    real_transaction = store.transaction

    @asynccontextmanager
    async def observed() -> AsyncIterator[Any]:
        async with real_transaction() as db:
            yield db
            async with db.execute("PRAGMA synchronous") as cur:  # last statement before its COMMIT
                seen.append((await cur.fetchone())[0])

    store.transaction = observed  # type: ignore[method-assign]
    outbox = Outbox(store)
    outbox.start()
    accepted = await outbox.accept(NewPost(key, validate_payload({"channelId": "10", "content": "hi"})))
    await outbox.close()
    assert seen == [2]
    assert await store.fetchval("SELECT status FROM relay_outbox WHERE id = ?", (accepted.id,)) == "queued"
    await store.close()
