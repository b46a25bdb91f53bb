"""Schema migrations: ``NNNN_name.sql`` files shipped inside the package (``bot/storage/sql``),
applied in order, each in its own transaction.

They are found through ``importlib.resources``, so a wheel or ``pip install .`` migrates exactly
like a checkout. The applied versions are recorded in ``schema_migrations``; running the runner
twice changes nothing, and a file that fails half-way is rolled back whole, leaving the previous
version intact. A database newer than the newest migration known here, or a package without any
migration, is refused before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import aiosqlite

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def packaged_migrations() -> Traversable:
    """The ``sql`` folder of the installed ``bot.storage`` package (a directory or a zip member)."""
    return files("bot.storage") / "sql"


class MigrationError(Exception):
    """The database cannot be brought to the code's schema; ``str()`` is one line for the operator."""


class MigrationFailed(MigrationError):
    """A migration file could not be applied; the database stays at ``version``."""

    def __init__(self, filename: str, version: int, reason: str) -> None:
        super().__init__(f"migration {filename} failed ({reason}); the database stays at version {version}")
        self.filename = filename
        self.version = version


class NoMigrations(MigrationError):
    """The installed package carries no migration files (built without its package data)."""

    def __init__(self, where: Traversable) -> None:
        super().__init__(
            f"this installation of gatecord has no database migrations ({where} holds no NNNN_name.sql file); "
            "reinstall it (the wheel must include bot/storage/sql/*.sql)"
        )


class DatabaseTooNew(MigrationError):
    """The database was migrated by a newer gatecord than this one."""

    def __init__(self, version: int, latest: int, database: str | Path | None = None) -> None:
        where = f"database {database}" if database is not None else "the database"
        super().__init__(
            f"{where} is at schema version {version}, newer than this gatecord knows (latest {latest}): "
            "run the gatecord release that created it, or point storage.path at another database"
        )
        self.version = version
        self.latest = latest


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Traversable


def discover(directory: Traversable | None = None) -> list[Migration]:
    """Every ``NNNN_name.sql`` file in ``directory`` (default: the packaged ones), ordered by version.

    A missing folder is the same as an empty one; duplicates and badly named ``.sql`` files are errors.
    """
    folder = packaged_migrations() if directory is None else directory
    try:
        entries = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    found: dict[int, Migration] = {}
    for entry in entries:
        match = _FILE_RE.match(entry.name)
        if not match:
            raise MigrationFailed(entry.name, 0, "file name must look like 0001_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationFailed(entry.name, 0, f"version {version} is used twice")
        found[version] = Migration(version, match.group(2), entry)
    return [found[v] for v in sorted(found)]


def latest_version(directory: Traversable | None = None) -> int:
    """The newest schema version this code knows; raises ``NoMigrations`` when there is none."""
    known = discover(directory)
    if not known:
        raise NoMigrations(packaged_migrations() if directory is None else directory)
    return known[-1].version


def stored_version(path: str | Path) -> int:
    """The schema version recorded in the SQLite file at ``path``, read-only (0 when it does not exist yet).

    Blocking (sqlite3): call it before the event loop starts or through ``asyncio.to_thread``.
    """
    database = Path(path)
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as db:
        try:
            row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
    return int(row[0]) if row else 0


def ensure_usable(database: str | Path | None, directory: Traversable | None = None) -> int:
    """Refuse to start when there is no migration or ``database`` is newer than the code; return the latest version.

    Blocking (reads the file): meant for the command line, before the event loop starts.
    """
    latest = latest_version(directory)
    if database is not None:
        try:
            version = stored_version(database)
        except sqlite3.Error as exc:
            raise MigrationError(f"database {database} cannot be read ({exc})") from None
        if version > latest:
            raise DatabaseTooNew(version, latest, database)
    return latest


def split_statements(sql: str) -> list[str]:
    """Split a script into statements (trigger bodies stay whole), without executescript's implicit COMMIT."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip().strip(";").strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()):
        statements.append(buffer.strip())
    return statements


async def current_version(db: aiosqlite.Connection) -> int:
    await _ensure_table(db)
    async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(db: aiosqlite.Connection, directory: Traversable | None = None) -> int:
    """Apply every migration not yet recorded; return the schema version afterwards.

    Raises ``NoMigrations`` or ``DatabaseTooNew`` before touching the schema, ``MigrationFailed``
    when a file cannot be applied (that file is rolled back whole).
    """
    known = await asyncio.to_thread(discover, directory)
    if not known:
        raise NoMigrations(packaged_migrations() if directory is None else directory)
    await _ensure_table(db)
    async with db.execute("SELECT version FROM schema_migrations") as cur:
        applied = {int(row[0]) for row in await cur.fetchall()}
    if applied and max(applied) > known[-1].version:
        raise DatabaseTooNew(max(applied), known[-1].version)
    for migration in known:
        if migration.version in applied:
            continue
        statements = split_statements(await asyncio.to_thread(migration.path.read_text, encoding="utf-8"))
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, strftime('%s','now'))",
                (migration.version, migration.name),
            )
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            await db.execute("ROLLBACK")
            raise MigrationFailed(migration.path.name, await current_version(db), str(exc)) from None
    return await current_version(db)


async def _ensure_table(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
