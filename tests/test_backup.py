"""`gatecord backup PATH`: a consistent online copy while the database is being written; restoring it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage.backup import backup_database
from bot.storage.migrations import latest_version, stored_version
from bot.storage.store import Store

LATEST = latest_version()
LEGACY_SQL = Path(__file__).resolve().parent.parent / "bot" / "storage" / "legacy_sql"


def env_for(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    env["GATECORD_STORAGE__PATH"] = str(db)
    return env


async def gatecord(*args: str, db: Path, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=env_for(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Store]:
    """The bot's database, migrated, with two tables every write keeps in step."""
    store = Store(tmp_path / "data" / "gatecord.db")
    await store.open()
    await store.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY)")
    await store.execute("CREATE TABLE entries_mirror (id INTEGER PRIMARY KEY)")
    yield store
    await store.close()


async def write_entry(store: Store, n: int) -> None:
    async with store.transaction():
        await store.execute("INSERT INTO entries(id) VALUES (?)", (n,))
        await store.execute("INSERT INTO entries_mirror(id) VALUES (?)", (n,))


def read_copy(path: Path) -> tuple[str, int, list[int], list[int]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        version = stored_version(path)
        entries = [r[0] for r in db.execute("SELECT id FROM entries ORDER BY id")]
        mirror = [r[0] for r in db.execute("SELECT id FROM entries_mirror ORDER BY id")]
    return integrity, version, entries, mirror


async def test_backup_while_the_database_is_written_gives_a_consistent_copy(live: Store, tmp_path: Path) -> None:
    for n in range(1, 201):
        await write_entry(live, n)  # committed before the backup starts
    stop = asyncio.Event()
    written = 200

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            written += 1
            await write_entry(live, written)

    task = asyncio.create_task(writer())
    copy = tmp_path / "backup.db"
    try:
        code, out, err = await gatecord("backup", str(copy), db=live.path, cwd=tmp_path)
    finally:
        stop.set()
        await task
    assert (code, err) == (0, ""), err
    assert out == f"backup of {live.path} written to {copy}: schema version {LATEST}\n"
    integrity, version, entries, mirror = read_copy(copy)
    assert (integrity, version) == ("ok", LATEST)
    # every row committed before the backup, and one consistent state: a prefix of the writes,
    # each transaction's two rows together
    assert entries[:200] == list(range(1, 201))
    assert entries == list(range(1, len(entries) + 1)) and len(entries) <= written
    assert mirror == entries
    assert copy.stat().st_mode & 0o777 == 0o600  # the copy holds the same secrets as the database
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial file left


async def test_backup_does_not_wait_for_or_include_an_open_write(live: Store, tmp_path: Path) -> None:
    await write_entry(live, 1)
    copy = tmp_path / "backup.db"
    async with live.transaction():  # the bot is in the middle of a write, holding the write lock
        await live.execute("INSERT INTO entries(id) VALUES (2)")
        version = await asyncio.to_thread(backup_database, live.path, copy)
    assert version == LATEST
    assert read_copy(copy) == ("ok", LATEST, [1], [1])


async def test_backup_refuses_to_overwrite_unless_forced_and_errors_are_one_line(live: Store, tmp_path: Path) -> None:
    await write_entry(live, 1)
    copy = tmp_path / "backup.db"
    copy.write_bytes(b"an older backup")
    code, out, err = await gatecord("backup", str(copy), db=live.path, cwd=tmp_path)
    assert (code, out) == (1, "")
    assert err == f"gatecord: {copy} already exists; pass --force to replace it\n"
    assert copy.read_bytes() == b"an older backup"

    code, out, err = await gatecord("backup", "--force", str(copy), db=live.path, cwd=tmp_path)
    assert (code, err) == (0, ""), err
    assert read_copy(copy) == ("ok", LATEST, [1], [1])

    code, out, err = await gatecord("backup", str(tmp_path / "nowhere" / "b.db"), db=live.path, cwd=tmp_path)
    assert (code, out, err) == (1, "", f"gatecord: folder {tmp_path / 'nowhere'} does not exist\n")
    missing = tmp_path / "missing.db"
    code, out, err = await gatecord("backup", str(tmp_path / "b.db"), db=missing, cwd=tmp_path)
    assert (code, out, err) == (1, "", f"gatecord: database {missing} does not exist (storage.path)\n")
    assert not missing.exists()  # a backup never creates the database
    code, out, err = await gatecord("backup", "--force", str(live.path), db=live.path, cwd=tmp_path)
    assert (code, err) == (1, f"gatecord: {live.path} is the database itself; choose another file\n")


def older_release_database(path: Path, files: int) -> int:
    """An SQLite file as an early release left it: its first SQL files applied, recorded in schema_migrations
    (before Alembic); one guild in it. Returns its version."""
    applied = sorted(LEGACY_SQL.glob("*.sql"))[:files]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                   "applied_at INTEGER NOT NULL)")
        for sql in applied:
            db.executescript(sql.read_text(encoding="utf-8"))
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (int(sql.name[:4]), sql.stem[5:]))
        db.execute("INSERT INTO guilds(guild_id, name, joined_at) VALUES (?, 'Ancienne guilde', 1)", (2**63 - 1,))
        db.commit()
    return int(applied[-1].name[:4])


async def test_a_restored_backup_is_brought_forward_by_the_migrations(tmp_path: Path) -> None:
    """README's restore: stop the bot, copy the backup over storage.path, start (or `gatecord migrate`)."""
    old_version = older_release_database(tmp_path / "old.db", files=2)
    assert old_version < LATEST
    backup = tmp_path / "backup.db"
    assert await asyncio.to_thread(backup_database, tmp_path / "old.db", backup) == old_version
    restored = tmp_path / "data" / "gatecord.db"
    restored.parent.mkdir()
    restored.write_bytes(backup.read_bytes())
    code, out, err = await gatecord("migrate", db=restored, cwd=tmp_path)
    assert (code, out, err) == (0, f"database {restored}: schema version {LATEST}\n", "")
    with contextlib.closing(sqlite3.connect(restored)) as db:
        assert db.execute("SELECT guild_id, name FROM guilds").fetchall() == [(2**63 - 1, "Ancienne guilde")]


async def test_a_file_that_is_not_a_gatecord_database_is_not_backed_up(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.commit()
    code, out, err = await gatecord("backup", str(tmp_path / "b.db"), db=other, cwd=tmp_path)
    assert (code, out) == (1, "")
    assert err == f"gatecord: {other} is not a gatecord database (it records no schema version)\n"
    assert not (tmp_path / "b.db").exists()
