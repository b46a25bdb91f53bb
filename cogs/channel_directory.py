"""Keeps the shared channel directory (``bot.relay.directory``) up to date from this process's shards,
so ``gatecord web`` and the other processes can check relay posts to channels of guilds held here.
Loaded only where the directory is used (PostgreSQL storage)."""

from __future__ import annotations

import discord
from discord.ext import commands

from bot.app.factory import GatecordBot
from bot.relay.directory import ChannelDirectory


class ChannelDirectoryWriter(commands.Cog):
    def __init__(self, directory: ChannelDirectory) -> None:
        self.directory = directory

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.directory.replace_guild(guild)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.directory.replace_guild(guild)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self.directory.remove_guild(guild.id)

    @commands.Cog.listener()
    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        await self.directory.upsert(channel)

    @commands.Cog.listener()
    async def on_guild_channel_update(self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel) -> None:
        await self.directory.upsert(after)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self.directory.remove_channel(channel.id)

    @commands.Cog.listener()
    async def on_thread_create(self, thread: discord.Thread) -> None:
        await self.directory.upsert(thread)

    @commands.Cog.listener()
    async def on_raw_thread_update(self, payload: discord.RawThreadUpdateEvent) -> None:
        await self.directory.thread_changed(payload)

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        await self.directory.remove_thread(payload.thread_id)


async def setup(bot: GatecordBot) -> None:
    if bot.channel_directory is not None:
        await bot.add_cog(ChannelDirectoryWriter(bot.channel_directory))
