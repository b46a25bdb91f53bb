"""The channel directory's reader (``DatabaseChannelScope``) on both backends: what it answers from
``discord_channels``, its short-lived cache (an injected clock moves time), and a database that fails.
The writer is tested end to end on the Discord emulator (tests/test_channel_directory_e2e.py)."""

from __future__ import annotations

import pytest

from bot.relay.api import ChannelInfo
from bot.relay.directory import CacheThenDirectoryScope, DatabaseChannelScope
from bot.storage.errors import StorageError
from bot.storage.store import Store
from tests.fake_clock import FakeClock

GUILD, CHANNEL, THREAD, CATEGORY, UNKNOWN = 7_000_000_000_000_001, 7_000_000_000_000_002, 7_000_000_000_000_003, \
    7_000_000_000_000_004, 7_000_000_000_000_009


async def put(store: Store, channel_id: int, guild_id: int, parent_id: int | None, messageable: bool) -> None:
    await store.execute(
        "INSERT INTO discord_channels(channel_id, guild_id, parent_id, messageable, updated_at) VALUES (?, ?, ?, ?, ?)",
        (channel_id, guild_id, parent_id, int(messageable), 1.0))


async def test_lookups_answer_from_the_table(store: Store) -> None:
    await put(store, CHANNEL, GUILD, None, True)
    await put(store, THREAD, GUILD, CHANNEL, True)
    await put(store, CATEGORY, GUILD, None, False)
    scope = DatabaseChannelScope(store)
    assert await scope.ready()
    assert await scope.lookup(CHANNEL) == ChannelInfo(GUILD, None, True)
    assert await scope.lookup(THREAD) == ChannelInfo(GUILD, CHANNEL, True)
    assert await scope.lookup(CATEGORY) == ChannelInfo(GUILD, None, False)
    assert await scope.lookup(UNKNOWN) is None


async def test_answers_are_remembered_for_the_ttl_then_read_again(store: Store) -> None:
    clock = FakeClock()
    scope = DatabaseChannelScope(store, ttl=5.0, clock=clock.now)
    assert await scope.lookup(CHANNEL) is None
    await put(store, CHANNEL, GUILD, None, True)
    assert await scope.lookup(CHANNEL) is None  # "unknown" is remembered too, for the TTL
    clock.advance(5.01)
    assert await scope.lookup(CHANNEL) == ChannelInfo(GUILD, None, True)
    await store.execute("DELETE FROM discord_channels WHERE channel_id = ?", (CHANNEL,))
    clock.advance(4.9)
    assert await scope.lookup(CHANNEL) == ChannelInfo(GUILD, None, True)
    clock.advance(0.2)
    assert await scope.lookup(CHANNEL) is None


async def test_the_cache_keeps_at_most_max_entries(store: Store) -> None:
    clock = FakeClock()
    scope = DatabaseChannelScope(store, ttl=60.0, max_entries=2, clock=clock.now)
    for channel_id in (CHANNEL, THREAD, CATEGORY):
        await put(store, channel_id, GUILD, None, True)
        assert await scope.lookup(channel_id) is not None
    await store.execute("DELETE FROM discord_channels")
    assert await scope.lookup(CATEGORY) is not None and await scope.lookup(THREAD) is not None  # still cached
    assert await scope.lookup(CHANNEL) is None  # the oldest was dropped, so it was read again


async def test_an_empty_directory_is_not_ready_until_a_process_records_channels(store: Store) -> None:
    clock = FakeClock()
    scope = DatabaseChannelScope(store, ttl=5.0, clock=clock.now)
    assert not await scope.ready()  # no gateway process has written anything yet: 503, not 403
    await put(store, CHANNEL, GUILD, None, True)
    assert not await scope.ready()  # asked again only after the TTL
    clock.advance(5.0)
    assert await scope.ready()
    await store.execute("DELETE FROM discord_channels")
    assert await scope.ready()  # once filled, it stays ready


async def test_a_database_that_cannot_answer_raises(store: Store) -> None:
    scope = DatabaseChannelScope(store)
    await store.close()
    with pytest.raises(StorageError):
        await scope.lookup(CHANNEL)
    with pytest.raises(StorageError):
        await scope.ready()


class Local:
    def __init__(self, channels: dict[int, ChannelInfo], ready: bool = True) -> None:
        self.channels, self.is_ready = channels, ready

    async def ready(self) -> bool:
        return self.is_ready

    async def lookup(self, channel_id: int) -> ChannelInfo | None:
        return self.channels.get(channel_id)


async def test_a_run_process_asks_its_own_cache_first_then_the_directory(store: Store) -> None:
    other_guild = GUILD + 10
    await put(store, CHANNEL, GUILD, None, True)          # the directory says guild GUILD …
    await put(store, THREAD, other_guild, None, True)     # … and knows a channel of another process's guild
    local = Local({CHANNEL: ChannelInfo(GUILD + 99, None, False)})
    scope = CacheThenDirectoryScope(local, DatabaseChannelScope(store))
    assert await scope.lookup(CHANNEL) == ChannelInfo(GUILD + 99, None, False)  # the live cache wins
    assert await scope.lookup(THREAD) == ChannelInfo(other_guild, None, True)
    assert await scope.lookup(UNKNOWN) is None
    assert await scope.ready()
    local.is_ready = False
    assert not await scope.ready()
