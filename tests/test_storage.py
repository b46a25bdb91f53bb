"""Migrations: ordered, idempotent, atomic per file; the store's pragmas and transactions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.storage.migrations import MIGRATIONS_DIR, MigrationError, discover, split_statements
from bot.storage.store import Store


def make_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def test_real_migrations_apply_and_are_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    version = await store.open()
    assert version == discover(MIGRATIONS_DIR)[-1].version
    tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
    await store.close()
    store = Store(tmp_path / "g.db")
    assert await store.open() == version
    assert await store.fetchval("SELECT COUNT(*) FROM schema_migrations") == len(discover(MIGRATIONS_DIR))
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
