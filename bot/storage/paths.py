"""Where an SQLite installation keeps what is not in its database file."""

from __future__ import annotations

from pathlib import Path


def images_dir_for(database_path: str | Path) -> Path:
    """``<directory of the database>/images`` (``data/images`` for an in-memory database): /imagine's files."""
    db = Path(database_path)
    if str(database_path) == ":memory:":
        return Path("data") / "images"
    return db.resolve().parent / "images"
