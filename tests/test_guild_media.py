"""Media on a server's own gateway, end to end: the real bot against the Discord emulator and two gateway
emulators — the operator's and guild A's own (another profile, its own key).

Guild gateways come from a dict-backed loader (the store of guild gateways is another part's): what
``/gateway set`` and ``/gateway remove`` leave behind is a row here, then ``invalidate`` and
``bot.guild_commands.refresh``, as they do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.app.factory import GatecordBot, create_bot
from bot.app.guild_commands import GuildCommands
from bot.app.settings import Settings
from bot.gateways.directory import GatewayDirectory, GuildGateway
from gateway_client import GatewayConfig
from sandbox.discord_emulator import DiscordEmulator
from sandbox.gateways import GatewayEmulator
from tests.e2e import BOT_READY_TIMEOUT, settings_for, stop_bot

GUILD_KEY = "sk-guild-a-own-key-0123456789"
MEDIA = {"poll_interval_seconds": 0.2, "poll_max_interval_seconds": 0.4}
QUICK_STOP = {"drain_seconds": 0.2}


class Rows:
    """The guild gateways "stored": guild id -> row (what gw-store's loader would read)."""

    def __init__(self) -> None:
        self.rows: dict[int, GuildGateway] = {}
        self.version = 0.0

    def put(self, guild_id: int, gateway: GatewayEmulator, key: str) -> None:
        self.version += 1
        config = GatewayConfig(profile=gateway.profile, base_url=gateway.root_url, api_key=key)
        self.rows[guild_id] = GuildGateway(guild_id=guild_id, config=config, updated_at=self.version)

    async def load(self, guild_id: int) -> GuildGateway | None:
        return self.rows.get(guild_id)


async def start(settings: Settings, rows: Rows) -> tuple[GatecordBot, asyncio.Task[None]]:
    """The real bot with a directory over ``rows`` (wired before its set-up, as the factory will)."""
    bot = create_bot(settings)
    bot.gateways = GatewayDirectory(bot.gateway, load=rows.load, public_only=False)
    bot.media_jobs.gateways = bot.gateways
    bot.guild_commands = GuildCommands(bot, guild_ids=lambda: list(rows.rows))
    task = asyncio.create_task(bot.start(settings.discord.token.get_secret_value()))
    waiter = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({task, waiter}, timeout=BOT_READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if task in done:
            task.result()
        await stop_bot(bot, task)
        raise TimeoutError("bot not ready")
    return bot, task


@contextlib.asynccontextmanager
async def guild_gateway(profile: str) -> AsyncIterator[GatewayEmulator]:
    emu = GatewayEmulator(profile, api_key=GUILD_KEY)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.close()


def settings(discord: DiscordEmulator, operator: GatewayEmulator, tmp_path: Path) -> Settings:
    return settings_for(discord, operator, tmp_path / "gatecord.db", media=MEDIA, shutdown=QUICK_STOP)


def names(commands: list[dict[str, Any]]) -> set[str]:
    return {c["name"] for c in commands}


def media_calls(gateway: GatewayEmulator, what: str) -> list[Any]:
    """The requests about ``what`` ("video", "images") other than listing models."""
    return [r for r in gateway.requests if what in r.path and not r.path.endswith("/models")]


def has_mp4(rec: Any) -> bool:
    return rec.original is not None and any(a.filename.endswith(".mp4") for a in rec.original.attachments)


async def open_holds(bot: GatecordBot) -> int:
    return int(await bot.store.fetchval("SELECT COUNT(*) FROM quota_reservations WHERE state = 'open'"))


async def job_row(bot: GatecordBot, kind: str) -> Any:
    return await bot.store.fetchone("SELECT * FROM media_jobs WHERE kind = ? ORDER BY id DESC", (kind,))


# -- /video: a guild command of the guild whose own gateway makes video -------------------------------

@pytest.mark.gateway_profile("digicord")
async def test_video_is_a_command_of_the_guild_whose_gateway_makes_it_and_runs_there(
    discord_emu: DiscordEmulator, gateway_emu: GatewayEmulator, tmp_path: Path,
) -> None:
    emu, operator = discord_emu, gateway_emu
    other = await emu.add_guild("Other server")
    rows = Rows()
    async with guild_gateway("openai") as own:
        own.video_polls_to_complete = 2
        rows.put(emu.guild_id, own, GUILD_KEY)
        bot, task = await start(settings(emu, operator, tmp_path), rows)
        try:
            # digicord makes no video: no global /video; guild A's own gateway does: its guild command
            assert "video" not in names(emu.global_commands())
            assert "video" in names(emu.guild_commands(emu.guild_id))
            assert "Edit image" in names(emu.guild_commands(emu.guild_id))  # openai edits, digicord does not
            assert "video" not in names(emu.guild_commands(other))
            with pytest.raises(KeyError):
                emu.commands.find("video", 1, other)

            rec = await emu.inject_slash_command("video", {"prompt": "a fox in the snow", "duration": 4,
                                                           "size": "320x180"})
            await rec.wait_final(has_mp4, timeout=60)
            posts = [r for r in own.requests if r.method == "POST" and r.path.endswith("videos/generations")]
            assert len(posts) == 1 and posts[0].status == 200  # the emulator took guild A's key
            assert own.api_key == GUILD_KEY
            assert media_calls(operator, "video") == []
            row = await job_row(bot, "video")
            assert row["profile"] == f"guild:openai {own.root_url}"  # which gateway took it

            # guild A goes back to the bot's gateway: /video leaves it (one sync; a second refresh: none)
            del rows.rows[emu.guild_id]
            bot.gateways.invalidate(emu.guild_id)
            assert await bot.guild_commands.refresh(emu.guild_id) is True
            assert "video" not in names(emu.guild_commands(emu.guild_id))
            assert "video" not in names(emu.global_commands())
            assert await bot.guild_commands.refresh(emu.guild_id) is False
        finally:
            await stop_bot(bot, task)


# -- /imagine create: the guild's gateway draws ------------------------------------------------------

@pytest.mark.gateway_profile("digicord")
async def test_imagine_in_a_guild_with_its_own_gateway_goes_there(
    discord_emu: DiscordEmulator, gateway_emu: GatewayEmulator, tmp_path: Path,
) -> None:
    emu, operator = discord_emu, gateway_emu
    other = await emu.add_guild("Other server")
    rows = Rows()
    async with guild_gateway("openai") as own:
        rows.put(emu.guild_id, own, GUILD_KEY)
        bot, task = await start(settings(emu, operator, tmp_path), rows)
        try:
            rec = await emu.inject_slash_command("imagine create", {"prompt": "a red fox", "count": 1})
            msg = await rec.wait_final(lambda r: r.original is not None and r.original.attachments, timeout=30)
            assert msg is not None
            drawn = [r for r in own.requests if r.method == "POST" and r.path.endswith("images/generations")]
            assert len(drawn) == 1 and drawn[0].status == 200
            # its profile's default model, never the operator's [gateway] image_model (a digicord model)
            assert drawn[0].json.get("model") != operator.default_image_model
            assert media_calls(operator, "images") == []

            # another guild draws on the operator's gateway
            rec = await emu.inject_slash_command("imagine create", {"prompt": "a blue fox", "count": 1},
                                                 guild_id=other)
            await rec.wait_final(lambda r: r.original is not None and r.original.attachments, timeout=30)
            assert len(media_calls(operator, "images")) == 1
            assert len([r for r in own.requests if r.path.endswith("images/generations")]) == 1
        finally:
            await stop_bot(bot, task)


# -- a global command the guild's gateway lacks -------------------------------------------------------

@pytest.mark.gateway_profile("openai")
async def test_a_global_media_command_the_guilds_gateway_lacks_says_so_privately(
    discord_emu: DiscordEmulator, gateway_emu: GatewayEmulator, tmp_path: Path,
) -> None:
    emu, operator = discord_emu, gateway_emu
    rows = Rows()
    async with guild_gateway("digicord") as own:
        rows.put(emu.guild_id, own, GUILD_KEY)
        bot, task = await start(settings(emu, operator, tmp_path), rows)
        try:
            assert "video" in names(emu.global_commands())
            assert emu.guild_commands(emu.guild_id) == []  # digicord offers nothing openai lacks
            rec = await emu.inject_slash_command("video", {"prompt": "a fox"})
            msg = await rec.wait_final(timeout=10)
            assert msg is not None and msg.ephemeral
            assert msg.content.endswith("This server's own AI gateway (digicord) does not offer video. A server "
                                        "manager can go back to the bot's gateway with `/gateway remove`.")
            assert media_calls(operator, "video") == [] and media_calls(own, "video") == []
            assert await bot.store.fetchval("SELECT COUNT(*) FROM media_jobs") == 0
        finally:
            await stop_bot(bot, task)


# -- restart recovery: polled on the job guild's gateway, and only there -----------------------------

async def submitted_video(emu: DiscordEmulator, own: GatewayEmulator, bot: GatecordBot) -> Any:
    own.video_polls_to_complete = 10**9  # "processing" until released
    rec = await emu.inject_slash_command("video", {"prompt": "a fox in the snow", "duration": 4, "size": "320x180"})
    await rec.wait_final(lambda r: r.original is not None and "processing" in r.original.content, timeout=30)
    (state,) = own.video_jobs.values()
    await emu.wait_for(lambda: state.polls >= 2, timeout=30)
    return rec, state


@pytest.mark.gateway_profile("digicord")
async def test_after_a_restart_a_video_is_polled_on_its_guilds_gateway(
    discord_emu: DiscordEmulator, gateway_emu: GatewayEmulator, tmp_path: Path,
) -> None:
    emu, operator = discord_emu, gateway_emu
    rows = Rows()
    async with guild_gateway("openai") as own:
        rows.put(emu.guild_id, own, GUILD_KEY)
        config = settings(emu, operator, tmp_path)
        bot, task = await start(config, rows)
        try:
            rec, state = await submitted_video(emu, own, bot)
        finally:
            await stop_bot(bot, task)
        assert not has_mp4(rec)
        own.video_polls_to_complete = state.polls + 2

        bot, task = await start(config, rows)
        try:
            await rec.wait_final(has_mp4, timeout=60)
            posts = [r for r in own.requests if r.method == "POST" and r.path.endswith("videos/generations")]
            assert len(posts) == 1  # followed, never sent again
            assert media_calls(operator, "video") == []
        finally:
            await stop_bot(bot, task)


@pytest.mark.gateway_profile("digicord")
async def test_a_video_whose_guild_changed_gateway_fails_and_releases_its_hold(
    discord_emu: DiscordEmulator, gateway_emu: GatewayEmulator, tmp_path: Path,
) -> None:
    emu, operator = discord_emu, gateway_emu
    rows = Rows()
    async with guild_gateway("openai") as own, guild_gateway("openai") as newer:
        rows.put(emu.guild_id, own, GUILD_KEY)
        config = settings(emu, operator, tmp_path)
        bot, task = await start(config, rows)
        try:
            rec, state = await submitted_video(emu, own, bot)
            assert await open_holds(bot) == 1
        finally:
            await stop_bot(bot, task)
        polls = state.polls
        rows.put(emu.guild_id, newer, GUILD_KEY)  # /gateway set to another gateway while the bot was down

        bot, task = await start(config, rows)
        try:
            failed = await rec.wait_final(lambda r: r.original is not None and "failed" in r.original.content,
                                          timeout=30)
            assert failed is not None
            assert "this server changed its AI gateway after the job was sent" in failed.content
            assert "Nothing was charged." in failed.content
            row = await job_row(bot, "video")
            assert row["status"] == "failed" and row["error"].startswith("gateway_changed")
            assert await open_holds(bot) == 0
            used, _ = await bot.quotas.counter("member", emu.guild_id, emu.users["alice"].id, "video_seconds")
            assert used == 0
            # never polled anywhere else: not on the new gateway, not on the operator's, not again on the old
            assert newer.requests == [] and media_calls(operator, "video") == []
            assert state.polls == polls
        finally:
            await stop_bot(bot, task)


# -- many processes: each syncs the servers on its own shards -------------------------------------------

async def test_a_process_syncs_only_the_servers_with_their_own_gateway_on_its_shards(
    discord_emu: DiscordEmulator, tmp_path: Path,
) -> None:
    key = Fernet.generate_key().decode()
    on_shard = {0: 10 << 22 | 5, 1: 11 << 22 | 5}  # (id >> 22) % 2 picks the shard
    held_ones: dict[int, list[int]] = {}
    for shard in (0, 1):
        s = settings_for(discord_emu, None, tmp_path / "shared.db", discord={"shard_count": 2, "shard_ids": [shard]},
                         secrets={"key": key})
        bot = create_bot(s)
        await bot.store.open()
        try:
            if shard == 0:  # one database, as the processes of one bot share
                for guild_id in on_shard.values():
                    await bot.guild_gateways.put(guild_id, profile="openai", base_url="https://gw.example",
                                                 api_key="sk-own-key-123456", actor_id=1)
            held_ones[shard] = await bot.guild_commands.held_guilds()
        finally:
            await bot.gateway.close()
            await bot.store.close()  # (never started: nothing else to close)
    assert held_ones == {0: [on_shard[0]], 1: [on_shard[1]]}

