"""Schema migrations: Alembic revisions shipped in the package (``bot/storage/alembic/versions``), one set
for SQLite and PostgreSQL.

Revision ids are schema version numbers ("0014", "0015" …), so ``gatecord migrate`` and ``check`` print a
number as before. An SQLite file from before Alembic (its versions in ``schema_migrations``) is first
brought to version 14 by the SQL files it was made with (``legacy_sql/``), then stamped 0014 and upgraded
like any other. A database newer than the newest revision here, or a package without revisions, is
refused before anything is written. Each revision runs in its own transaction: one that fails leaves the
database at the previous version.

Everything here is blocking (SQLAlchemy's sync API): SQLite runs it in a thread, PostgreSQL through
``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from importlib.resources import as_file, files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from bot.storage.errors import DatabaseTooNew, MigrationError, MigrationFailed, NoMigrations

__all__ = [
    "DatabaseTooNew", "MigrationError", "MigrationFailed", "NoMigrations",
    "latest_version", "upgrade", "downgrade", "current_version", "stored_version", "ensure_usable", "sqlite_engine",
]

LEGACY_LATEST = 14  # the version the SQL files of the first wave end at (= revision "0014")
_LEGACY_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def _script_location() -> Path:
    location = files("bot.storage") / "alembic"
    with as_file(location) as path:  # a real directory for an installed package or a checkout
        return Path(path)


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def latest_version() -> int:
    """The newest schema version this code knows; raises ``NoMigrations`` when there is none."""
    try:
        head = _scripts().get_current_head()
    except Exception:  # noqa: BLE001 - a package without its scripts folder, or a broken one
        head = None
    if head is None:
        raise NoMigrations(_script_location() / "versions")
    return int(head)


def _as_version(revision: str | None) -> int:
    if revision is None:
        return 0
    try:
        return int(revision)
    except ValueError:
        raise MigrationError(f"the database is at schema revision {revision!r}, which gatecord does not know") from None


def current_version(connection: Connection) -> int:
    """The version recorded in the database (0 for an empty one; a pre-Alembic SQLite file's own number)."""
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None and connection.dialect.name == "sqlite":
        return _legacy_version(connection)
    return _as_version(revision)


def _check_not_newer(version: int, latest: int, database: str | None) -> None:
    if version > latest:
        raise DatabaseTooNew(version, latest, database)


def upgrade(connection: Connection, database: str | None = None, *, to: str = "head") -> int:
    """Bring the database to the newest version (or to revision ``to``); return it. ``connection`` is not
    in a transaction."""
    latest = latest_version()
    version = current_version(connection)
    _check_not_newer(version, latest, database)
    if connection.dialect.name == "sqlite" and MigrationContext.configure(connection).get_current_revision() is None:
        if _has_table(connection, "schema_migrations"):
            _legacy_upgrade(connection)
            command.stamp(_config(connection), f"{LEGACY_LATEST:04d}")
            _commit(connection)
    try:
        command.upgrade(_config(connection), to)
        _commit(connection)
    except (sa_exc.SQLAlchemyError, sqlite3.Error) as exc:
        _rollback(connection)
        failed = current_version(connection)
        raise MigrationFailed(f"to version {failed + 1:04d}", failed, str(getattr(exc, "orig", exc))) from None
    return current_version(connection)


def downgrade(connection: Connection, to: str) -> int:
    """Take the database back to revision ``to`` (each revision's downgrade in its own transaction);
    return the version it is at. For tests and operators undoing an upgrade; the bot never downgrades."""
    try:
        command.downgrade(_config(connection), to)
        _commit(connection)
    except (sa_exc.SQLAlchemyError, sqlite3.Error) as exc:
        _rollback(connection)
        failed = current_version(connection)
        raise MigrationFailed(f"back from version {failed:04d}", failed, str(getattr(exc, "orig", exc))) from None
    return current_version(connection)


def _commit(connection: Connection) -> None:
    if connection.in_transaction():
        connection.commit()


def _rollback(connection: Connection) -> None:
    with contextlib.suppress(Exception):
        if connection.in_transaction():
            connection.rollback()


def _has_table(connection: Connection, name: str) -> bool:
    row = connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).first()
    return row is not None


# -- SQLite files from before Alembic -----------------------------------------------------------------


def _legacy_version(connection: Connection) -> int:
    if not _has_table(connection, "schema_migrations"):
        return 0
    row = connection.exec_driver_sql("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").first()
    return int(row[0]) if row else 0


def _legacy_upgrade(connection: Connection) -> None:
    """Apply the first wave's SQL files the file has not had yet, each in its own transaction."""
    applied = {int(r[0]) for r in connection.exec_driver_sql("SELECT version FROM schema_migrations")}
    _commit(connection)
    folder = files("bot.storage") / "legacy_sql"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = _LEGACY_FILE.match(entry.name)
        if not match or int(match.group(1)) in applied:
            continue
        version = int(match.group(1))
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        try:
            raw.execute("BEGIN IMMEDIATE")
            for statement in _split(entry.read_text(encoding="utf-8")):
                raw.execute(statement)
            raw.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, strftime('%s','now'))",
                (version, match.group(2)),
            )
            raw.execute("COMMIT")
        except sqlite3.Error as exc:
            raw.execute("ROLLBACK")
            raise MigrationFailed(entry.name, max(applied, default=0), str(exc)) from None
        applied.add(version)


def _split(sql: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip().strip(";").strip():
                statements.append(buffer.strip())
            buffer = ""
    return statements


# -- SQLite: a migration connection of its own ----------------------------------------------------------


def sqlite_engine(path: str | Path) -> Engine:
    """An engine on the SQLite file whose transactions really begin (``BEGIN IMMEDIATE``), so a revision
    that fails is rolled back whole (pysqlite would otherwise run DDL outside any transaction)."""
    engine = create_engine(f"sqlite:///{Path(path)}", poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout=5000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def stored_version(path: str | Path) -> int:
    """The schema version of the SQLite file at ``path``, read-only (0 when it does not exist yet)."""
    database = Path(path)
    if not database.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "alembic_version" in tables:
                row = db.execute("SELECT version_num FROM alembic_version").fetchone()
                return _as_version(row[0] if row else None)
            if "schema_migrations" in tables:
                row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
                return int(row[0]) if row else 0
            return 0
    except sqlite3.Error as exc:
        raise MigrationError(f"database {database} cannot be read ({exc})") from None


def ensure_usable(database: str | Path | None) -> int:
    """Refuse to start when there is no migration or the SQLite ``database`` is newer than the code.

    Blocking: for the command line, before the event loop starts. Return the latest version.
    """
    latest = latest_version()
    if database is not None:
        _check_not_newer(stored_version(database), latest, str(database))
    return latest
