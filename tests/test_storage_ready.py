"""`GET /ready` is a real write to the database: a database that reads but cannot write is not ready."""

from __future__ import annotations

import sqlite3
from typing import Any

import aiohttp


async def ready(bot_env: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bot_env.http}/ready") as resp:
            return resp.status, (await resp.json())["checks"]["database"]


async def test_ready_turns_false_while_the_database_cannot_write_and_back(bot_env: Any) -> None:
    status, database = await ready(bot_env)
    assert (status, database["ok"]) == (200, True), database
    assert database["detail"].startswith("schema version ")

    # another process (a stray sqlite3 shell, a backup tool writing) holds the write lock
    other = sqlite3.connect(bot_env.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        status, database = await ready(bot_env)
        assert status == 503 and database["ok"] is False
        # the probe meets the lock itself, or (on a busy machine) behind one of the bot's own writes that
        # is already waiting on it: either way the reason names it
        assert database["detail"] in ("database cannot write: database is locked",
                                      "database cannot write: the store was busy for 1 s"), database
    finally:
        other.execute("ROLLBACK")
        other.close()
    status, database = await ready(bot_env)
    assert (status, database["ok"]) == (200, True), database

    # a read-only database: reads still work, writes are refused
    backend = bot_env.bot.store._backend  # the SQLite connection itself (a PRAGMA outside any transaction)
    await backend.call(backend.connection.execute, "PRAGMA query_only=ON")
    status, database = await ready(bot_env)
    assert status == 503
    assert database == {"ok": False, "detail": "database cannot write: attempt to write a readonly database"}
    await backend.call(backend.connection.execute, "PRAGMA query_only=OFF")
    status, database = await ready(bot_env)
    assert (status, database["ok"]) == (200, True), database
