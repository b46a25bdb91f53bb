"""User installs and DMs in the Discord emulator, driven by the real discord.py client: DM channels,
interaction contexts and authorizing owners, guilds the bot is not in (403 50001), the follow-up limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from sandbox.discord_emulator import DiscordEmulator
from sandbox.discord_emulator import permissions as P
from sandbox.discord_emulator.installs import CommandNotAvailable
from tests.test_discord_emulator import TOKEN, running

EVERYWHERE = dict(guilds=True, dms=True, private_channels=True)


class InstallBot(discord.Client):
    """``/where`` works everywhere (guild + user install); ``/admin`` is guild install, guild only;
    ``/chatty`` sends follow-ups; ``/post`` tries the channel API."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents)
        self.tree = app_commands.CommandTree(self)
        self.dm_messages: list[discord.Message] = []
        self.seen: asyncio.Queue[discord.Interaction] = asyncio.Queue()
        self.outcomes: asyncio.Queue[Any] = asyncio.Queue()

    async def setup_hook(self) -> None:
        tree = self.tree

        @tree.command(name="where", description="Where am I?")
        @app_commands.allowed_installs(guilds=True, users=True)
        @app_commands.allowed_contexts(**EVERYWHERE)
        async def where(interaction: discord.Interaction) -> None:
            await self.seen.put(interaction)
            await interaction.response.send_message("here")

        @tree.command(name="admin", description="Guild admins only")
        @app_commands.allowed_installs(guilds=True, users=False)
        @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
        async def admin(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("admin")

        @tree.command(name="chatty", description="Many follow-ups")
        @app_commands.allowed_installs(guilds=True, users=True)
        @app_commands.allowed_contexts(**EVERYWHERE)
        async def chatty(interaction: discord.Interaction, count: int) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content="starting")
            for i in range(count):
                try:
                    await interaction.followup.send(f"part {i + 1}")
                except discord.HTTPException as exc:
                    await self.outcomes.put(exc)
                    return
            await self.outcomes.put(count)

        @tree.command(name="post", description="Post in the channel instead of answering")
        @app_commands.allowed_installs(guilds=True, users=True)
        @app_commands.allowed_contexts(**EVERYWHERE)
        async def post(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True)
            channel = interaction.channel
            assert isinstance(channel, discord.abc.Messageable)
            try:
                await channel.send("posted through the channel API")
            except discord.HTTPException as exc:
                await self.outcomes.put(exc)
            else:
                await self.outcomes.put("sent")
            await interaction.edit_original_response(content="done")

        await tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        if message.author == self.user or message.guild is not None:
            return
        self.dm_messages.append(message)
        await message.channel.send(f"you said: {message.content}")


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator(token=TOKEN) as e:
        yield e


@pytest.fixture
async def bot(emu: DiscordEmulator) -> AsyncIterator[InstallBot]:
    async with running(emu, InstallBot()) as b:
        yield b


async def next_seen(bot: InstallBot) -> discord.Interaction:
    return await asyncio.wait_for(bot.seen.get(), 5)


# -- commands keep and enforce their install types and contexts --------------------------------


async def test_registered_commands_keep_integration_types_and_contexts(emu: DiscordEmulator, bot: InstallBot) -> None:
    where, _ = emu.commands.find("where", 1, None)
    admin, _ = emu.commands.find("admin", 1, None)
    assert (where["integration_types"], where["contexts"]) == ([0, 1], [0, 1, 2])
    assert (admin["integration_types"], admin["contexts"]) == ([0], [0])


async def test_a_command_outside_its_contexts_or_installs_cannot_be_injected(
    emu: DiscordEmulator, bot: InstallBot
) -> None:
    emu.install_for_user("alice")
    friends = await emu.add_guild("Friends", bot_member=False)
    with pytest.raises(CommandNotAvailable, match="not allowed in a DM"):
        await emu.inject_slash_command("admin", channel_id=emu.dm_channel_id("alice"))
    with pytest.raises(KeyError, match="not installed"):  # guild install only, and the bot is not in Friends
        await emu.inject_slash_command("admin", guild_id=friends)
    with pytest.raises(KeyError, match="not installed"):  # bob did not install the app
        await emu.inject_slash_command("where", guild_id=friends, user="bob")
    assert not [r for r in emu.interactions.values()]


async def test_where_the_bot_is_a_member_the_guild_install_authorizes(emu: DiscordEmulator, bot: InstallBot) -> None:
    rec = await emu.inject_slash_command("where")
    seen = await next_seen(bot)
    assert rec.payload["authorizing_integration_owners"] == {"0": str(emu.guild_id)}
    assert seen.context.guild and not seen.context.dm_channel
    assert seen.is_guild_integration() and not seen.is_user_integration()
    assert seen.app_permissions.value == emu.permissions_for(emu.bot_user_id, emu.channel_id)

    emu.install_for_user("alice")  # both installs: both keys
    rec = await emu.inject_slash_command("where")
    seen = await next_seen(bot)
    assert rec.authorizing_integration_owners == {"0": str(emu.guild_id), "1": str(emu.users["alice"].id)}
    assert seen.is_guild_integration() and seen.is_user_integration()


async def test_a_user_install_in_a_guild_without_the_bot(emu: DiscordEmulator, bot: InstallBot) -> None:
    friends = await emu.add_guild("Friends", bot_member=False)
    assert bot.get_guild(friends) is None  # no GUILD_CREATE
    emu.install_for_user("alice")
    rec = await emu.inject_slash_command("where", guild_id=friends)
    seen = await next_seen(bot)
    assert rec.payload["context"] == 0
    assert rec.payload["authorizing_integration_owners"] == {"1": str(emu.users["alice"].id)}
    assert seen.is_user_integration() and not seen.is_guild_integration()
    assert seen.guild_id == friends and bot.get_guild(friends) is None
    assert isinstance(seen.user, discord.Member) and seen.user.id == emu.users["alice"].id
    assert seen.channel is not None and seen.channel.id == rec.channel_id and seen.channel.name == "general"
    # Discord: @everyone's permissions there, limited to what an interaction response can use
    assert int(rec.payload["app_permissions"]) == P.EVERYONE_DEFAULT & P.INTERACTION_RESPONSE
    answer = await rec.wait_final()
    assert answer is not None and answer.content == "here"
    # members' messages in that guild never reach the bot
    await emu.send_user_message("hello friends", channel_id=rec.channel_id)
    await emu.inject_slash_command("where")  # an event after it, to know the gateway has caught up
    await next_seen(bot)
    assert not bot.dm_messages and all(m.content != "hello friends" for m in bot.cached_messages)


async def test_the_bots_dm_and_a_group_dm(emu: DiscordEmulator, bot: InstallBot) -> None:
    dm = emu.dm_channel_id("alice")
    rec = await emu.inject_slash_command("where", channel_id=dm)
    seen = await next_seen(bot)
    assert (rec.payload["context"], rec.payload["authorizing_integration_owners"]) == (1, {"0": "0"})
    assert "guild_id" not in rec.payload and "member" not in rec.payload
    assert rec.payload["user"]["id"] == str(emu.users["alice"].id)
    assert int(rec.payload["app_permissions"]) == P.DM_APP_PERMISSIONS
    assert seen.context.dm_channel and isinstance(seen.channel, discord.DMChannel) and seen.guild is None

    emu.install_for_user("alice")
    group = emu.private_channel_id(("alice", "bob"))
    rec = await emu.inject_slash_command("where", channel_id=group)
    seen = await next_seen(bot)
    alice = str(emu.users["alice"].id)
    assert (rec.payload["context"], rec.payload["authorizing_integration_owners"]) == (2, {"1": alice})
    assert int(rec.payload["app_permissions"]) == P.PRIVATE_CHANNEL_APP_PERMISSIONS
    assert seen.context.private_channel and isinstance(seen.channel, discord.GroupChannel)
    assert seen.is_user_integration()
    with pytest.raises(KeyError, match="not installed"):  # bob has not installed the app
        await emu.inject_slash_command("where", channel_id=group, user="bob")


# -- DMs ----------------------------------------------------------------------------------------


async def test_a_dm_reaches_on_message_without_a_guild_and_the_bot_answers_there(
    emu: DiscordEmulator, bot: InstallBot
) -> None:
    dm = emu.dm_channel_id("alice")
    assert emu.world.channels[dm].type == 1 and emu.dm_channel_id("alice") == dm
    sent = await emu.send_user_message("hi bot", channel_id=dm)
    reply = await emu.wait_for_message(lambda m: m.channel_id == dm and m.author_id == emu.bot_user_id)
    assert reply.content == "you said: hi bot" and reply.guild_id is None
    (seen,) = bot.dm_messages
    assert seen.guild is None and seen.id == sent.id and seen.author.id == emu.users["alice"].id
    assert isinstance(seen.channel, discord.DMChannel)
    event = next(r for r in emu.requests_to(f"/channels/{dm}/messages", "POST"))
    assert event.status == 200


async def test_the_bot_opens_a_dm_and_cannot_thread_there(emu: DiscordEmulator, bot: InstallBot) -> None:
    bob = await bot.fetch_user(emu.users["bob"].id)
    channel = await bob.create_dm()
    assert channel.id == emu.dm_channel_id("bob") and channel.recipient is not None and channel.recipient.id == bob.id
    message = await channel.send("hello bob", file=discord.File(__file__, filename="notes.py"))
    stored = emu.messages[message.id]
    assert stored.guild_id is None and stored.attachments[0].filename == "notes.py"
    edited = await message.edit(content="hello again")
    assert edited.content == "hello again" and emu.messages[message.id].content == "hello again"
    with pytest.raises(discord.HTTPException) as err:
        await bot.http.start_thread_with_message(channel.id, message.id, name="nope", auto_archive_duration=60)
    assert err.value.code == 50003
    assert not emu.forbidden_calls


async def test_the_bot_cannot_reach_a_dm_it_is_not_in(emu: DiscordEmulator, bot: InstallBot) -> None:
    group = emu.private_channel_id(("alice", "bob"))
    with pytest.raises(discord.Forbidden) as err:
        await bot.http.send_message(group, params=discord.http.MultipartParameters({"content": "hi"}, None, None))
    assert err.value.code == 50001
    assert [r.path for r in emu.forbidden_calls] == [f"/channels/{group}/messages"]


# -- no access where the bot is not a member -----------------------------------------------------


async def test_channel_calls_in_a_guild_without_the_bot_are_forbidden_and_recorded(
    emu: DiscordEmulator, bot: InstallBot
) -> None:
    friends = await emu.add_guild("Friends", bot_member=False)
    emu.install_for_user("alice")
    rec = await emu.inject_slash_command("post", guild_id=friends)
    outcome = await asyncio.wait_for(bot.outcomes.get(), 5)
    assert isinstance(outcome, discord.Forbidden) and outcome.code == 50001
    await rec.wait_final(lambda r: r.content == "done")
    assert [(r.method, r.path) for r in emu.forbidden_calls] == [("POST", f"/channels/{rec.channel_id}/messages")]
    assert not [m for m in emu.channel_messages(rec.channel_id) if m.content == "posted through the channel API"]


async def test_every_route_about_a_guild_without_the_bot_answers_403_50001(
    emu: DiscordEmulator, bot: InstallBot
) -> None:
    friends = await emu.add_guild("Friends", bot_member=False)
    channel = emu.world.guilds[friends].channel_ids[0]
    headers = {"Authorization": f"Bot {TOKEN}"}
    calls = [
        ("GET", f"/channels/{channel}"), ("POST", f"/channels/{channel}/typing"),
        ("GET", f"/channels/{channel}/messages"), ("POST", f"/channels/{channel}/threads"),
        ("GET", f"/channels/{channel}/webhooks"), ("GET", f"/channels/{channel}/pins"),
        ("GET", f"/guilds/{friends}"), ("GET", f"/guilds/{friends}/members/{emu.users['alice'].id}"),
        ("GET", f"/guilds/{friends}/channels"),
        ("PUT", f"/applications/{emu.application_id}/guilds/{friends}/commands"),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path in calls:
            async with http.request(method, emu.api_base_url + path, headers=headers, json={}) as resp:
                assert (resp.status, (await resp.json())["code"]) == (403, 50001), path
    assert [(r.method, r.path) for r in emu.forbidden_calls] == calls


# -- the follow-up limit -----------------------------------------------------------------------------


async def test_the_sixth_follow_up_of_a_user_install_only_interaction_fails_with_40094(
    emu: DiscordEmulator, bot: InstallBot
) -> None:
    friends = await emu.add_guild("Friends", bot_member=False)
    emu.install_for_user("alice")
    rec = await emu.inject_slash_command("chatty", {"count": 6}, guild_id=friends)
    outcome = await asyncio.wait_for(bot.outcomes.get(), 5)
    assert isinstance(outcome, discord.HTTPException) and (outcome.status, outcome.code) == (400, 40094)
    assert [m.content for m in rec.followups] == [f"part {i}" for i in range(1, 6)]
    assert rec.original is not None and rec.original.content == "starting"


async def test_a_guild_install_has_no_follow_up_limit(emu: DiscordEmulator, bot: InstallBot) -> None:
    emu.install_for_user("alice")  # the guild install also authorizes it here
    rec = await emu.inject_slash_command("chatty", {"count": 7})
    assert await asyncio.wait_for(bot.outcomes.get(), 5) == 7
    assert len(rec.followups) == 7
