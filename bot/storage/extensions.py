"""SQLite extensions loaded into every connection the SQLite backend opens: sqlite-vec (vector distances).

Loaded the supported way (``enable_load_extension`` around ``sqlite_vec.load``, then disabled again, so SQL
can never load a library itself). Some Python builds have no extension loading at all (``sqlite3`` compiled
without ``--enable-loadable-sqlite-extensions``, as pyenv's are by default); the connection then works
without it and the knowledge base searches exactly with numpy instead (``bot.knowledge.store``), saying why.
"""

from __future__ import annotations

import sqlite3

__all__ = ["load_sqlite_vec", "sqlite_vec_problem"]

NO_LOADING = (
    "this Python's sqlite3 module cannot load extensions (built without --enable-loadable-sqlite-extensions)"
)


def sqlite_vec_problem() -> str | None:
    """Why sqlite-vec cannot be loaded by this Python at all, or None when it can be tried."""
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        return NO_LOADING
    try:
        import sqlite_vec  # noqa: F401
    except ImportError:
        return "the sqlite-vec package is not installed"
    return None


def load_sqlite_vec(conn: sqlite3.Connection) -> str | None:
    """Load sqlite-vec into ``conn``; None when it is loaded, else why not (the connection works anyway)."""
    problem = sqlite_vec_problem()
    if problem is not None:
        return problem
    import sqlite_vec

    try:
        conn.enable_load_extension(True)
        try:
            sqlite_vec.load(conn)
        finally:
            conn.enable_load_extension(False)
    except sqlite3.Error as exc:
        return f"sqlite-vec could not be loaded ({exc})"
    return None
