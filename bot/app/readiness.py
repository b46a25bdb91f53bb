"""Readiness checks shared by ``gatecord run`` and ``gatecord web`` (``GET /ready``)."""

from __future__ import annotations

from bot.storage.store import Store

#: seconds /ready waits for its test write (a lock held longer: not ready)
READY_WRITE_TIMEOUT = 2.0
_DIALECTS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


async def database_check(store: Store, timeout: float = READY_WRITE_TIMEOUT) -> tuple[bool, str]:
    """Ready only when a test write commits: a database that reads but cannot write is not ready."""
    if not store.is_open:
        return False, "database not open"
    problem = await store.write_probe(timeout=timeout)
    if problem is not None:
        return False, f"database cannot write: {problem}"
    return True, f"schema version {store.schema_version} ({_DIALECTS[store.dialect]})"
