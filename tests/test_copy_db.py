"""`gatecord copy-db`: an installation moved from SQLite to PostgreSQL and back, with data in every table.

Each way: every row arrives equal (64-bit ids, NULLs, unicode, blobs, fractional times), auto-numbered
tables go on above the source's ids (deleted ones included), and what the operator reads is one line
per table. Refusals are one line with the exit code, and leave the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.storage.migrations import latest_version
from bot.storage.schema import metadata
from bot.storage.store import Store
from tests.db_fill import NEVER_REUSED, dump, embedding_value, fill
from tests.pg_server import free_port

LATEST = latest_version()
PASSWORD = "c0py-Secret"  # the test server trusts any password: it is there to be hidden
AUTO_NUMBERED = {t.name: t.autoincrement_column.name for t in metadata.sorted_tables if t.autoincrement_column is not None}


def copy_db(source: str, target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECORD_")}
    proc = subprocess.run([sys.executable, "-m", "bot", "copy-db", "--from", source, "--to", target],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert PASSWORD not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def shown(url: str) -> str:
    return url.replace("postgresql://postgres@", "postgresql://postgres:***@", 1)


class Database:
    """One side of a copy in the test: the argument given to copy-db, how it is printed, a Store on it."""

    def __init__(self, kind: str, tmp_path: Path, pg_url: str | None = None) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.path = tmp_path / f"{kind}-{len(list(tmp_path.iterdir()))}.db"
            self.argument, self.printed = f"sqlite:{self.path}", f"database {self.path}"
        else:
            assert pg_url is not None
            self.argument, self.printed = with_password(pg_url), f"database {shown(pg_url)}"

    def store(self) -> Store:
        return Store(self.path) if self.kind == "sqlite" else Store(url=self.argument)


def other(kind: str) -> str:
    return "postgresql" if kind == "sqlite" else "sqlite"


async def contents(database: Database) -> dict[str, list[dict[str, Any]]]:
    store = database.store()
    await store.open()
    try:
        return await dump(store)
    finally:
        await store.close()


@pytest.mark.parametrize("source_kind", ["sqlite", "postgresql"])
async def test_copy_moves_every_row_of_every_table(source_kind: str, tmp_path: Path, pg_url: str) -> None:
    source = Database(source_kind, tmp_path, pg_url)
    target = Database(other(source_kind), tmp_path, pg_url)
    store = source.store()
    await store.open()
    try:
        used_up = await fill(store)  # each never-reused table's deleted last id
        before = await dump(store)
    finally:
        await store.close()
    assert all(before[table.name] for table in metadata.sorted_tables)  # the fixture fills EVERY table

    proc = copy_db(source.argument, target.argument, tmp_path)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = [f"  {t.name}: {len(before[t.name])} row{'' if len(before[t.name]) == 1 else 's'}"
             for t in metadata.sorted_tables]
    total = sum(len(rows) for rows in before.values())
    lines.append(f"copied {total} rows in {len(before)} tables from {source.printed} to {target.printed} "
                 f"(schema version {LATEST})")
    assert proc.stdout.splitlines() == lines

    after = await contents(target)
    for table in before:
        assert after[table] == before[table], table
    assert await contents(source) == before  # the source is only read

    # the copy is a working database: new rows get ids above every id the source ever handed out
    store = target.store()
    assert await store.open() == LATEST
    try:
        new_ids = await insert_one_into_each_auto_numbered_table(store)
    finally:
        await store.close()
    for table, column in AUTO_NUMBERED.items():
        largest = max(row[column] for row in before[table])
        assert new_ids[table] > largest, table
        if table in NEVER_REUSED:
            assert new_ids[table] > used_up[table], table  # a deleted row's id is not handed out again


async def insert_one_into_each_auto_numbered_table(store: Store) -> dict[str, int]:
    now = 1_800_000_000.5
    statements = {
        "usage_ledger": ("INSERT INTO usage_ledger (ts, day, guild_id, user_id, feature, outcome) "
                         "VALUES (:t, '2026-01-01', 1, 2, 'chat', 'ok') RETURNING id"),
        "audit_log": ("INSERT INTO audit_log (ts, guild_id, actor_id, target, field) "
                      "VALUES (:t, 1, 2, 'guild', 'chat_model') RETURNING id"),
        "relay_outbox": ("INSERT INTO relay_outbox (id, key_id, guild_id, channel_id, body, via, next_attempt_at, "
                         "created_at) VALUES ('new-post', 'rk_live_1', 1, 2, '{}', 'bot', :t, :t) RETURNING seq"),
        "media_jobs": ("INSERT INTO media_jobs (user_id, profile, prompt, count, created_at) "
                         "VALUES (2, 'flux', 'new', 1, :t) RETURNING id"),
        "chat_turns": ("INSERT INTO chat_turns (conversation_id, user_id, role, content, created_at) "
                       "VALUES ('new', 2, 'user', 'hi', :t) RETURNING id"),
        "knowledge_answers": ("INSERT INTO knowledge_answers (guild_id, channel_id, thread_id, user_id, created_at) "
                              "VALUES (1, 2, 3, 4, :t) RETURNING id"),
    }
    ids = {table: int(await store.fetchval(sql, {"t": now})) for table, sql in statements.items()}
    ids["knowledge_documents"] = int(await store.fetchval(
        "INSERT INTO knowledge_documents (guild_id, source, title, content_hash, chunk_count, added_by, added_at)"
        " VALUES (1, 'new.md', 'New', 'h', 1, 2, :t) RETURNING id", {"t": now}))
    ids["knowledge_chunks"] = int(await store.fetchval(
        "INSERT INTO knowledge_chunks (document_id, guild_id, idx, text, embedding, dims)"
        " VALUES (:d, 1, 0, 'new', :e, 3) RETURNING id",
        {"d": ids["knowledge_documents"], "e": embedding_value([1.0, 0.0, 0.0], store.dialect)}))
    assert set(ids) == set(AUTO_NUMBERED)  # a new auto-numbered table needs its line here
    return ids


async def test_a_target_that_holds_rows_is_refused_and_left_as_it_was(tmp_path: Path, pg_url: str) -> None:
    source = Database("sqlite", tmp_path)
    target = Database("postgresql", tmp_path, pg_url)
    store = source.store()
    await store.open()
    await fill(store)
    await store.close()
    assert copy_db(source.argument, target.argument, tmp_path).returncode == 0
    before = await contents(target)
    proc = copy_db(source.argument, target.argument, tmp_path)
    first = metadata.sorted_tables[0].name
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (f"gatecord: {target.printed} is not empty (table {first} has rows): copy-db fills a new "
                           "database; give an empty one\n")
    assert await contents(target) == before


async def test_a_source_at_an_older_schema_version_is_refused(tmp_path: Path) -> None:
    source = Database("sqlite", tmp_path)
    store = source.store()
    await store.open()
    await store.close()
    with contextlib.closing(sqlite3.connect(source.path)) as db:
        db.execute("UPDATE alembic_version SET version_num = '0014'")
        db.commit()
    target = tmp_path / "new.db"
    proc = copy_db(source.argument, f"sqlite:{target}", tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"gatecord: {source.printed} is at schema version 14, this gatecord's is {LATEST}: run `gatecord migrate` "
        "on it first (with [storage] pointing at it), then copy\n"
    )
    assert not target.exists()  # refused before the target was touched


async def test_a_copy_that_fails_part_way_leaves_the_target_empty(tmp_path: Path, pg_url: str) -> None:
    """One transaction on the target: a row PostgreSQL refuses (here a message naming a turn that no
    longer exists, which an SQLite file without foreign keys enforced may hold) undoes the whole copy."""
    source = Database("sqlite", tmp_path)
    target = Database("postgresql", tmp_path, pg_url)
    store = source.store()
    await store.open()
    await fill(store)
    await store.close()
    with contextlib.closing(sqlite3.connect(source.path)) as db:  # foreign keys are off on a bare connection
        db.execute("INSERT INTO chat_messages (message_id, turn_id) VALUES (42, 999999)")
        db.commit()
    proc = copy_db(source.argument, target.argument, tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("gatecord: copying table chat_messages failed (")
    assert proc.stderr.endswith(f"); {target.printed} was left without any copied row\n")
    assert proc.stderr.count("\n") == 1
    assert not any((await contents(target)).values())


def test_an_unreachable_postgresql_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://gatecord:{PASSWORD}@127.0.0.1:{free_port()}/gatecord_prod"
    proc = copy_db(url, f"sqlite:{tmp_path / 'new.db'}", tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(f"gatecord: database {url.replace(PASSWORD, '***')} cannot be reached (")
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "new.db").exists()


FORMS = "give sqlite:PATH or postgresql://user:password@host:5432/dbname"


@pytest.mark.parametrize(("source", "target", "line"), [
    ("data/gatecord.db", "postgresql://db/x", f"--from: {FORMS}"),
    ("sqlite:a.db", f"mysql://root:{PASSWORD}@db/x", f"--to: {FORMS}"),  # the value is not echoed
    ("sqlite:", "sqlite:b.db", f"--from: {FORMS}"),
    ("sqlite:missing.db", "sqlite:b.db", "database missing.db does not exist"),
    ("sqlite:a.db", "sqlite:a.db", "--from and --to are the same database"),
    ("sqlite:junk.db", "sqlite:b.db", "database junk.db cannot be read (file is not a database)"),
    ("sqlite:folder", "sqlite:b.db", "database folder is not a file"),
])
def test_bad_arguments_are_one_line(source: str, target: str, line: str, tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"not an SQLite file, whatever its name says" * 4)
    (tmp_path / "folder").mkdir()
    proc = copy_db(source, target, tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"gatecord: {line}\n")
    assert not (tmp_path / "b.db").exists()


def test_copy_db_needs_no_configuration(tmp_path: Path) -> None:
    """A broken config.toml beside it does not stop a copy (both databases are on the command line)."""
    (tmp_path / "config.toml").write_text("this is [not toml")
    proc = copy_db("sqlite:missing.db", "sqlite:b.db", tmp_path)
    assert proc.stderr == "gatecord: database missing.db does not exist\n"


async def test_images_an_sqlite_installation_kept_as_files_go_into_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The PostgreSQL processes may not share the SQLite installation's folder: the bytes travel in the rows."""
    source, target = Database("sqlite", tmp_path), Database("postgresql", tmp_path, pg_url)
    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    folder = source.path.parent / "images" / "7"
    folder.mkdir(parents=True)
    (folder / "1.png").write_bytes(picture)
    store = source.store()
    await store.open()
    try:
        job = await store.fetchval(
            "INSERT INTO media_jobs (user_id, profile, prompt, count, created_at, status)"
            " VALUES (2, 'flux', 'a fox', 2, 1.0, 'done') RETURNING id")
        for idx, path in ((1, "7/1.png"), (2, "7/gone.png")):  # the second file was lost: stays without bytes
            await store.execute("INSERT INTO media_files (job_id, idx, path, mime, size_bytes) VALUES (?, ?, ?, ?, ?)",
                                (job, idx, path, "image/png", len(picture)))
    finally:
        await store.close()
    proc = copy_db(source.argument, target.argument, tmp_path)
    assert proc.returncode == 0, proc.stderr
    copied = target.store()
    await copied.open()
    try:
        rows = await copied.fetchall("SELECT idx, path, data FROM media_files ORDER BY idx")
    finally:
        await copied.close()
    assert [(r["idx"], r["path"], r["data"]) for r in rows] == [(1, "7/1.png", picture), (2, "7/gone.png", None)]
