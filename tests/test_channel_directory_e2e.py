"""The channel directory's writer end to end: the real bot on PostgreSQL against the Discord emulator
records what its shards see in ``discord_channels`` (for ``gatecord web`` and the other processes),
and follows channels and threads created, archived and deleted, and a guild it leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.relay.api import ChannelInfo
from bot.storage.store import Store
from sandbox.discord_emulator import DiscordEmulator
from tests.e2e import settings_for, start_bot
from tests.waiting import Changes, store_writes

Directory = dict[int, ChannelInfo]


async def directory(store: Store) -> Directory:
    rows = await store.fetchall("SELECT channel_id, guild_id, parent_id, messageable FROM discord_channels")
    return {r[0]: ChannelInfo(r[1], r[2], r[3] == 1) for r in rows}


async def wait_directory(changes: Changes, store: Store, check: Any, what: str) -> Directory:
    """The directory once ``check(directory)`` holds (re-read after every write of the bot's store)."""
    async def read() -> Directory | None:
        seen = await directory(store)
        return seen if check(seen) else None
    return await changes.wait_until(read, timeout=15, what=what)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Changes:
    return store_writes(monkeypatch)


async def test_a_bot_on_postgresql_records_its_guilds_channels_and_follows_their_changes(
    discord_emu: DiscordEmulator, gateway_emu: Any, tmp_path: Path, pg_url: str, writes: Changes,
) -> None:
    emu = discord_emu
    running = await start_bot(settings_for(emu, gateway_emu, tmp_path / "unused.db", storage={"url": pg_url}))
    store = running.bot.store
    try:
        g1, g2 = emu.guild_id, emu.guild2_id
        first = {
            emu.channel_id: ChannelInfo(g1, None, True), emu.channel2_id: ChannelInfo(g1, None, True),
            emu.thread_id: ChannelInfo(g1, emu.channel_id, True),
            emu.other_guild_channel_id: ChannelInfo(g2, None, True),
            emu.forum_channel_id: ChannelInfo(g1, None, False),  # a forum: posts, no messages of its own
        }
        await wait_directory(writes, store, lambda d: d == first, "both guilds' channels recorded")

        created = await emu.add_channel("announcements")
        category = await emu.add_channel("Projects", type=4)
        thread = await emu.add_channel("a-thread", type=11, parent_id=created)
        await wait_directory(writes, store, lambda d: d.get(created) == ChannelInfo(g1, None, True)
                             and d.get(category) == ChannelInfo(g1, None, False)
                             and d.get(thread) == ChannelInfo(g1, created, True), "new channels recorded")

        await emu.archive_thread(emu.thread_id)  # an archived thread leaves discord.py's cache: and the directory
        await wait_directory(writes, store, lambda d: emu.thread_id not in d, "archived thread forgotten")

        await emu.delete_channel(created)  # its thread goes with it
        seen = await wait_directory(writes, store, lambda d: created not in d and thread not in d,
                                    "deleted channel forgotten")
        assert seen[emu.channel_id] == ChannelInfo(g1, None, True) and category in seen

        await emu.remove_guild(g2)
        seen = await wait_directory(writes, store, lambda d: emu.other_guild_channel_id not in d,
                                    "the guild left forgotten")
        assert {info.guild_id for info in seen.values()} == {g1}
    finally:
        await running.stop()


async def test_a_process_holding_one_shard_records_only_its_guilds_and_a_restart_replaces_them(
    discord_emu: DiscordEmulator, gateway_emu: Any, tmp_path: Path, pg_url: str, writes: Changes,
) -> None:
    emu = discord_emu
    shard1 = settings_for(emu, gateway_emu, tmp_path / "unused.db", storage={"url": pg_url},
                          discord={"shard_count": 2, "shard_ids": [1]})
    running = await start_bot(shard1)
    try:
        await wait_directory(writes, running.bot.store, lambda d: d == {
            emu.other_guild_channel_id: ChannelInfo(emu.guild2_id, None, True)}, "shard 1's guild recorded")
        # a stale row of this guild (a channel deleted while no process held the shard) …
        await running.bot.store.execute(
            "INSERT INTO discord_channels(channel_id, guild_id, parent_id, messageable, updated_at)"
            " VALUES (?, ?, NULL, 1, 0.0)", (424242, emu.guild2_id))
    finally:
        await running.stop()
    running = await start_bot(shard1)
    try:  # … is dropped when the guild becomes available again
        await wait_directory(writes, running.bot.store, lambda d: d == {
            emu.other_guild_channel_id: ChannelInfo(emu.guild2_id, None, True)}, "stale row dropped")
    finally:
        await running.stop()


async def test_a_run_process_accepts_a_post_for_a_guild_on_another_process_shard(
    discord_emu: DiscordEmulator, gateway_emu: Any, tmp_path: Path, pg_url: str, writes: Changes,
) -> None:
    """Shard 1's process has guild 1 (on shard 0) nowhere in its cache: its /send-data finds the channel in
    the directory that shard 0's process filled, and one of the two delivers the post, once."""
    import aiohttp

    from bench._relay_process import make_key

    emu = discord_emu
    emu.set_rate_limits(enabled=False)

    def on_shard(shard: int) -> Any:
        return settings_for(emu, gateway_emu, tmp_path / "unused.db", storage={"url": pg_url},
                            discord={"shard_count": 2, "shard_ids": [shard]}, relay={"poll_interval": 0.1})

    zero = await start_bot(on_shard(0))
    one = await start_bot(on_shard(1))
    try:
        assert one.bot.get_channel(emu.channel_id) is None  # not in this process's cache
        await wait_directory(writes, one.bot.store, lambda d: emu.channel_id in d, "shard 0's channels recorded")
        key = await make_key(pg_url, emu.guild_id)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{one.bot.web.base_url}/send-data?wait=true",
                                 json={"channelId": str(emu.channel_id), "content": "across shards"},
                                 headers={"Authorization": f"Bearer {key}"}) as resp:
                answer = await resp.json()
                assert resp.status == 200 and answer["status"] == "delivered", answer
            # a channel no process has seen is refused as before
            async with http.post(f"{one.bot.web.base_url}/send-data",
                                 json={"channelId": "424242", "content": "nowhere"},
                                 headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 403
        sent = [m for m in emu.channel_messages(emu.channel_id) if m.content == "across shards"]
        assert len(sent) == 1 and str(sent[0].id) == answer["message_id"]
    finally:
        await one.stop()
        await zero.stop()
