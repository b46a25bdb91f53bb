"""What the storage layer raises, the same for SQLite and PostgreSQL.

Callers catch these instead of a driver's own classes: ``StorageError`` for "the database failed"
(locked, disk full, connection lost), ``IntegrityError`` for a constraint that refused a row.
"""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """The database could not do what was asked; ``str()`` is the driver's one-line reason."""


class IntegrityError(StorageError):
    """A constraint (unique, foreign key, check, not null) refused the statement."""


class MigrationError(StorageError):
    """The database cannot be brought to the code's schema; ``str()`` is one line for the operator."""


class MigrationFailed(MigrationError):
    """A migration could not be applied; the database stays at ``version``."""

    def __init__(self, name: str, version: int, reason: str) -> None:
        super().__init__(f"migration {name} failed ({reason}); the database stays at version {version}")
        self.filename = name
        self.version = version


class NoMigrations(MigrationError):
    """The installed package carries no migrations (built without its package data)."""

    def __init__(self, where: object) -> None:
        super().__init__(
            f"this installation of gatecord has no database migrations ({where} holds none); "
            "reinstall it (the wheel must include bot/storage/alembic/versions/*.py)"
        )


class DatabaseTooNew(MigrationError):
    """The database was migrated by a newer gatecord than this one."""

    def __init__(self, version: int, latest: int, database: str | Path | None = None) -> None:
        where = f"database {database}" if database is not None else "the database"
        super().__init__(
            f"{where} is at schema version {version}, newer than this gatecord knows (latest {latest}): "
            "run the gatecord release that created it, or point [storage] at another database"
        )
        self.version = version
        self.latest = latest


class DatabaseTooOld(MigrationError):
    """The database is at an older schema version than the code, and this process does not migrate."""

    def __init__(self, version: int, latest: int, database: str | Path | None = None) -> None:
        where = f"database {database}" if database is not None else "the database"
        super().__init__(
            f"{where} is at schema version {version}, older than this gatecord (latest {latest}): "
            "run `gatecord migrate` first (`gatecord web` never migrates)"
        )
        self.version = version
        self.latest = latest
