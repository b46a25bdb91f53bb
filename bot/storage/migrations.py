"""Schema migrations: ``bot/storage/sql/NNNN_name.sql`` applied in order, each in its own transaction.

The applied versions are recorded in ``schema_migrations``; running the runner twice changes
nothing, and a file that fails half-way is rolled back whole, leaving the previous version intact.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

MIGRATIONS_DIR = Path(__file__).resolve().parent / "sql"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """A migration file could not be applied; the database stays at ``version``."""

    def __init__(self, filename: str, version: int, reason: str) -> None:
        super().__init__(f"migration {filename} failed ({reason}); the database stays at version {version}")
        self.filename = filename
        self.version = version


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNNN_name.sql`` file in ``directory``, ordered by version; duplicates are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(path.name, 0, "file name must look like 0001_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(path.name, 0, f"version {version} is used twice")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


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
    if buffer.strip() and not all(l.strip().startswith("--") or not l.strip() for l in buffer.splitlines()):
        statements.append(buffer.strip())
    return statements


async def current_version(db: aiosqlite.Connection) -> int:
    await _ensure_table(db)
    async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(db: aiosqlite.Connection, directory: Path = MIGRATIONS_DIR) -> int:
    """Apply every migration not yet recorded; return the schema version afterwards."""
    await _ensure_table(db)
    async with db.execute("SELECT version FROM schema_migrations") as cur:
        applied = {int(row[0]) for row in await cur.fetchall()}
    for migration in discover(directory):
        if migration.version in applied:
            continue
        statements = split_statements(migration.path.read_text(encoding="utf-8"))
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
            raise MigrationError(migration.path.name, await current_version(db), str(exc)) from None
    return await current_version(db)


async def _ensure_table(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
