"""Two ``Store`` objects on one database (as two processes have): the same SQLite file, or the same
PostgreSQL database of the test server, each with its own connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.storage.store import Store


@asynccontextmanager
async def two_stores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Store, Store]]:
    if backend == "sqlite":
        first, second = Store(tmp_path / "shared.db"), Store(tmp_path / "shared.db")
    else:
        url = request.getfixturevalue("pg_url")
        first, second = Store(url=url), Store(url=url)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()
