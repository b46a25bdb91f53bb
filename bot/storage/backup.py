"""``gatecord backup``: a consistent copy of the live database through SQLite's online backup API.

The copy is read over its own read-only connection, in one backup step: that step is one read
transaction, so the copy is the database as of one commit even while the bot keeps writing (WAL
lets writers go on meanwhile). It is written to a temporary file next to the target (mode 600),
switched to a rollback journal so it is one self-contained file, checked with ``PRAGMA
integrity_check``, then renamed over the target: a failed backup never leaves a half-written file.

Blocking (sqlite3 and file I/O): the command line calls it outside any event loop.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from bot.storage.migrations import MigrationError, stored_version


class BackupError(Exception):
    """The backup could not be made; ``str()`` is one line for the operator."""


def backup_database(source: str | Path, target: str | Path, *, force: bool = False) -> int:
    """Copy the database at ``source`` to ``target``; return the copy's schema version.

    ``target`` must not exist unless ``force``; its folder must exist.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise BackupError(f"database {source} does not exist (storage.path)")
    if target.is_dir():
        raise BackupError(f"{target} is a folder; give the backup's file name")
    if target.exists():
        if target.resolve() == source.resolve():
            raise BackupError(f"{target} is the database itself; choose another file")
        if not force:
            raise BackupError(f"{target} already exists; pass --force to replace it")
    if not target.parent.is_dir():
        raise BackupError(f"folder {target.parent} does not exist")
    partial = target.parent / f".{target.name}.{os.getpid()}.partial"
    try:
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        _copy(source, partial)
        version = _version_of(source, partial)
        os.replace(partial, target)
        _sync_folder(target.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {source} failed: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot write the backup {target}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return version


def _version_of(source: Path, copy: Path) -> int:
    """The copy's schema version (Alembic's, or a file from before Alembic: its own table's)."""
    try:
        version = stored_version(copy)
    except MigrationError as exc:
        raise BackupError(f"the copy of {source} cannot be read back ({exc})") from None
    if version == 0:
        raise BackupError(f"{source} is not a gatecord database (it records no schema version)")
    return version


def _copy(source: Path, destination: Path) -> None:
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        dst = sqlite3.connect(destination)
        try:
            src.backup(dst)  # pages=-1: every page in one step, one read transaction: one consistent state
            dst.execute("PRAGMA journal_mode=DELETE")  # the copy is one file, no -wal beside it
            problems = [row[0] for row in dst.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                raise BackupError(f"the copy of {source} fails its integrity check: {problems[0]}")
        finally:
            dst.close()
    finally:
        src.close()


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
