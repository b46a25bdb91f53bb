"""Relay keys in the database, on SQLite and PostgreSQL: one read per key however many requests arrive
at once, revocation, and key creation from two processes at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.relay.keys import KeyLimitReached, KeyNameTaken, KeyStore
from bot.storage.store import Store

GUILD = 1000


async def test_a_cold_key_is_read_once_for_a_burst_of_requests(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeyStore(store)
    secret = (await keys.create(GUILD, name="ci", created_by=1)).secret
    reads: list[str] = []
    fetchone = store.fetchone

    async def counting(sql: str, params: Any = ()) -> Any:
        reads.append(sql)
        return await fetchone(sql, params)

    monkeypatch.setattr(store, "fetchone", counting)
    found = await asyncio.gather(*(keys.authenticate(secret) for _ in range(20)))
    assert all(k is not None and k.name == "ci" for k in found)
    assert len(reads) == 1
    assert await keys.authenticate(secret[:-1] + ("x" if secret[-1] != "x" else "y")) is None  # cached, wrong
    assert len(reads) == 1


async def test_revoking_during_a_read_is_not_undone_by_it(store: Store) -> None:
    keys = KeyStore(store)
    new = await keys.create(GUILD, name="ci", created_by=1)
    reading = asyncio.ensure_future(keys.authenticate(new.secret))
    await asyncio.sleep(0)  # the read has started
    assert await keys.revoke(GUILD, new.record.key_id, revoked_by=2)
    await reading  # (whatever it saw, it must not be cached)
    assert await keys.authenticate(new.secret) is None


async def test_two_processes_creating_keys_at_once(pg_migrated_url: str) -> None:
    """The same name twice: one key, one KeyNameTaken; a limit of 3 with 6 creations: 3 keys."""
    first, second = Store(url=pg_migrated_url), Store(url=pg_migrated_url)
    await first.open()
    await second.open()
    try:
        a, b = KeyStore(first), KeyStore(second)
        same = await asyncio.gather(a.create(GUILD, name="shop", created_by=1),
                                    b.create(GUILD, name="shop", created_by=2), return_exceptions=True)
        assert sorted(type(r).__name__ for r in same) == ["KeyNameTaken", "NewKey"]
        assert any(isinstance(r, KeyNameTaken) for r in same)
        limited = await asyncio.gather(*(ks.create(GUILD + 1, name=f"k{i}", created_by=1, max_keys=3)
                                         for i, ks in enumerate([a, b] * 3)), return_exceptions=True)
        assert sum(isinstance(r, KeyLimitReached) for r in limited) == 3
        assert await first.fetchval("SELECT COUNT(*) FROM relay_keys WHERE guild_id = ?", (GUILD + 1,)) == 3
    finally:
        await first.close()
        await second.close()
