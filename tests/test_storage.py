"""Migrations: ordered, idempotent, atomic per file; the store's pragmas and transactions."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
